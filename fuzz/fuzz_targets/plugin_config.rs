//! A plugin's configuration, through the real path: the host hands a metric's (or a failure
//! policy's) `config` to a shipped plugin component as JSON text and the plugin checks it
//! (`lint`, `run` and `serve` call `validate` on every configuration before any rollout
//! starts; `rollgate plugin validate --config TEXT` hands the operator's raw text).
//!
//! The first byte picks the shipped plugin, the rest is the configuration text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate::plugin::{
    BUILTIN, ComponentCache, HostConfig, LoadOptions, Plugin, PluginHost, PluginSource,
};
use std::sync::OnceLock;
use std::time::Duration;

struct Loaded {
    runtime: tokio::runtime::Runtime,
    plugins: Vec<Plugin>,
}

fn loaded() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(|| {
        let host = PluginHost::new(HostConfig {
            // Compiled once per process, in memory: nothing is written to disk.
            cache: ComponentCache::disabled(),
            epoch_tick: Duration::from_millis(10),
            max_concurrent_calls: 1,
            compile_timeout: Duration::from_secs(600),
            pooling: true,
            require_signed_plugins: false,
        })
        .expect("a plugin host");
        let plugins = BUILTIN
            .iter()
            .map(|(name, _)| {
                host.load(
                    &PluginSource::Builtin(name.to_string()),
                    &LoadOptions::default(),
                )
                .unwrap_or_else(|e| panic!("the shipped plugin {name} does not load: {e}"))
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        Loaded { runtime, plugins }
    })
}

// Compile the plugins before the first input: compiling takes seconds, which libFuzzer's
// per-input timeout would otherwise count against that input.
fuzz_target!(init: { loaded(); }, |data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Some(text) = rollgate_fuzz::text(rest) else {
        return;
    };
    let loaded = loaded();
    let plugin = &loaded.plugins[usize::from(pick) % loaded.plugins.len()];
    let mut configs = vec![text.to_string()];
    // What lint/run/serve hand over: the YAML value serialised as JSON.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let canonical = value.to_string();
        if canonical != text {
            configs.push(canonical);
        }
    }
    for config in &configs {
        let checked = loaded.runtime.block_on(plugin.validate(config));
        // A shipped plugin answers every configuration: a trap, a timeout or a malformed
        // answer on some input is a bug in the plugin (or in the host's sandbox).
        let problems = checked.unwrap_or_else(|e| {
            panic!("{} failed on config {config:?}: {e}", plugin.name())
        });
        for p in &problems {
            assert!(!p.message.trim().is_empty(), "{}: a problem says nothing: {p:?}", plugin.name());
            assert!(
                p.path.is_empty() || p.path.starts_with('/'),
                "{}: the path {:?} is not a JSON pointer",
                plugin.name(),
                p.path
            );
        }
        // Text that is not JSON cannot be a valid configuration.
        if serde_json::from_str::<serde_json::Value>(config).is_err() {
            assert!(
                !problems.is_empty(),
                "{} accepted a configuration that is not JSON: {config:?}",
                plugin.name()
            );
        }
    }
});
