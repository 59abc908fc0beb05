//! `VerificationTemplate` documents: declared args (with defaults) and metrics, checked
//! as written; they are expanded with their args where a verification uses them.

use super::Loader;
use super::source::Src;
use crate::spec::docs::{self, P};
use crate::spec::model::TemplateSpec;
use std::collections::{BTreeMap, BTreeSet};

impl Loader {
    pub(super) fn template(
        &mut self,
        src: &Src,
        name: &P<String>,
        doc: &docs::TemplateDoc,
    ) -> Option<TemplateSpec> {
        let before = self.errors.len();
        let mut args = BTreeMap::new();
        for (i, a) in doc.args.iter().enumerate() {
            if a.name.value.trim().is_empty() {
                self.errors.push(src.err(
                    &a.name,
                    format!("spec.args[{i}].name"),
                    "an arg needs a name",
                ));
            } else if args.insert(a.name.value.clone(), a.value.clone()).is_some() {
                self.errors.push(src.err(
                    &a.name,
                    format!("spec.args[{i}].name"),
                    format!("arg {:?} is declared twice", a.name.value),
                ));
            }
        }
        let declared: BTreeSet<String> = args.keys().cloned().collect();
        let owner = format!("template {:?} declares:", name.value);
        let mut metrics = Vec::new();
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        if doc.metrics.value.is_empty() {
            self.errors.push(src.err(
                &doc.metrics,
                "spec.metrics",
                "a template needs at least one metric",
            ));
        }
        for (i, m) in doc.metrics.value.iter().enumerate() {
            let path = format!("spec.metrics[{i}]");
            if let Some(first) = names.get(&m.name.value) {
                self.errors.push(src.err(
                    &m.name,
                    format!("{path}.name"),
                    format!(
                        "metric {:?} is defined twice in this template (first at {first})",
                        m.name.value
                    ),
                ));
            } else {
                names.insert(m.name.value.clone(), src.here(&m.name));
            }
            if let Some(mut spec) = self.metric(src, &path, m, &declared, &owner) {
                spec.template = Some(name.value.clone());
                spec.args = args
                    .iter()
                    .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                    .collect();
                metrics.push(spec);
            }
        }
        (self.errors.len() == before).then(|| TemplateSpec {
            name: name.value.clone(),
            args,
            metrics,
            file: src.file.clone(),
        })
    }
}
