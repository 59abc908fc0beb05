//! `MetricBackend` documents (their specs are checked by the rules `metrics::config` builds
//! backends with) and references to them by name.

use super::source::Src;
use super::{Loader, list};
use crate::metrics::config::MetricBackendDoc;

impl Loader {
    pub(super) fn check_backend(&mut self, src: &Src, doc: &MetricBackendDoc) {
        for (path, message) in crate::metrics::config::problems(&doc.spec) {
            self.errors.push(src.err_doc(path, message));
        }
    }

    pub(super) fn backend_missing(&self, name: &str) -> Option<String> {
        if self.backend_names.contains(name) {
            None
        } else if self.backend_names.is_empty() {
            Some(format!(
                "backend {name:?} not found; no MetricBackend documents were loaded"
            ))
        } else {
            Some(format!(
                "backend {name:?} not found; known backends: {}",
                list(&self.backend_names)
            ))
        }
    }
}
