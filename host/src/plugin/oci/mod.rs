//! Plugins from an OCI registry, pinned by digest and optionally verified by a cosign
//! signature.
//!
//! A `Plugin` document's `source: oci://REGISTRY/REPO@sha256:DIGEST` pins the *manifest*.
//! Loading follows Kubewarden's order: the signature (when a key is given) is checked first
//! and must sign the pinned digest; then the manifest is fetched by that digest and its
//! bytes re-hashed; then its one component layer is fetched (refused past the component size
//! limit) and its bytes re-hashed against the layer digest. Both Wasm artifact conventions
//! are accepted: the CNCF one (`application/vnd.wasm.config.v0+json` config, an
//! `application/wasm` layer) and wasm-to-oci's (`application/vnd.wasm.content.layer.v1+wasm`).
//!
//! What was fetched is cached by digest in `oci/` under the compile cache (each entry
//! written to a temporary file in the same folder, synced, then renamed: never a partial
//! entry) and re-hashed on every read, so a second start asks the registry nothing; a
//! verified signature is cached as its payload and signature and re-checked with the key
//! each time, offline.
//!
//! | file | what it holds |
//! |---|---|
//! | `reference.rs` | [`OciRef`]: parsing `oci://…` |
//! | `client.rs` | the distribution-API client: manifests, blobs, auth challenges, uploads |
//! | `cosign.rs` | key-based cosign signatures: verify and sign |

pub mod client;
pub mod cosign;
pub mod reference;

pub use client::Access;
pub use reference::OciRef;

use crate::metrics::secret::SecretRef;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// A Docker v2 manifest (same shape).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The CNCF Wasm config media type.
pub const WASM_CONFIG_V0: &str = "application/vnd.wasm.config.v0+json";
/// The CNCF Wasm layer media type.
pub const WASM_LAYER: &str = "application/wasm";
/// wasm-to-oci's config media type.
pub const WASM_CONFIG_V1: &str = "application/vnd.wasm.config.v1+json";
/// wasm-to-oci's layer media type.
pub const WASM_CONTENT_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";

/// The default time a pull may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How a pull failed; each has a stable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OciFailure {
    /// The registry could not be reached, refused, or answered nonsense (or timed out).
    PullFailed,
    /// Nothing at that reference (a kind of `pull-failed` to operators).
    NotFound,
    /// What was fetched does not hash to the digest it was fetched by.
    DigestMismatch,
    /// A signature that does not verify with the key, or signs another digest.
    SignatureInvalid,
    /// No signature where one is required.
    Unsigned,
    /// Not a Wasm component artifact (an image, an index, another layer type).
    WrongMediaType,
    /// The component layer is over the component size limit.
    ComponentTooLarge,
}

impl OciFailure {
    /// The stable name (`pull-failed`, `digest-mismatch`, …).
    pub fn kind(self) -> &'static str {
        match self {
            OciFailure::PullFailed | OciFailure::NotFound => "pull-failed",
            OciFailure::DigestMismatch => "digest-mismatch",
            OciFailure::SignatureInvalid => "signature-invalid",
            OciFailure::Unsigned => "unsigned",
            OciFailure::WrongMediaType => "wrong-media-type",
            OciFailure::ComponentTooLarge => "component-too-large",
        }
    }
}

/// A failed pull, push or signature check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciError {
    /// Which kind of failure.
    pub failure: OciFailure,
    /// What happened and what to do (never a credential).
    pub message: String,
}

impl std::fmt::Display for OciError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.failure.kind(), self.message)
    }
}

/// Where a plugin's component is published and how to reach and trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciSource {
    /// The reference, with its digest.
    pub reference: OciRef,
    /// `auth.username`, by reference.
    pub username: Option<SecretRef>,
    /// `auth.password`, by reference.
    pub password: Option<SecretRef>,
    /// `tls.caFile`.
    pub ca_file: Option<PathBuf>,
    /// Plain HTTP (`insecure: true`).
    pub insecure: bool,
    /// The longest the pull may take.
    pub timeout: Duration,
    /// `verify.cosign.publicKey`: the key the signature must verify with.
    pub cosign_key: Option<PathBuf>,
}

impl OciSource {
    /// A source for `reference` with the defaults (HTTPS, no credentials, no signature).
    pub fn new(reference: OciRef) -> OciSource {
        OciSource {
            reference,
            username: None,
            password: None,
            ca_file: None,
            insecure: false,
            timeout: DEFAULT_TIMEOUT,
            cosign_key: None,
        }
    }

    /// How to reach the registry, reading the credentials now.
    pub fn access(&self) -> Result<Access, OciError> {
        let credentials = match (&self.username, &self.password) {
            (Some(u), Some(p)) => {
                let read = |r: &SecretRef, field: &str| {
                    r.resolve().map_err(|e| OciError {
                        failure: OciFailure::PullFailed,
                        message: format!("auth.{field}: {e}"),
                    })
                };
                Some((read(u, "username")?, read(p, "password")?))
            }
            (None, None) => None,
            _ => {
                return Err(OciError {
                    failure: OciFailure::PullFailed,
                    message: "auth needs both username and password".into(),
                });
            }
        };
        Ok(Access {
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
            credentials,
            timeout: self.timeout,
        })
    }
}

/// A manifest, the parts rollgate reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// 2.
    #[serde(default)]
    pub schema_version: u32,
    /// The manifest's own media type, when it says.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The config descriptor.
    #[serde(default)]
    pub config: Option<Descriptor>,
    /// The layers.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// An index's manifests (present only in an index).
    #[serde(default)]
    pub manifests: Option<serde_json::Value>,
}

/// A content descriptor.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// Its size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Its annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The component layer of a manifest, after checking it is a Wasm artifact.
fn component_layer<'m>(
    manifest: &'m Manifest,
    served_type: &str,
) -> Result<&'m Descriptor, OciError> {
    let wrong = |what: String| OciError {
        failure: OciFailure::WrongMediaType,
        message: format!(
            "{what}; a plugin is published as a Wasm artifact: one {WASM_LAYER} (or {WASM_CONTENT_LAYER}) layer, as `rollgate plugin push` writes"
        ),
    };
    let declared = manifest.media_type.as_deref().unwrap_or(served_type);
    if manifest.manifests.is_some() || declared.contains("index") || declared.contains("list") {
        return Err(wrong(format!(
            "the reference is an index ({declared}), not a single manifest"
        )));
    }
    if !declared.is_empty() && declared != OCI_MANIFEST && declared != DOCKER_MANIFEST {
        return Err(wrong(format!("the manifest's media type is {declared}")));
    }
    if manifest.schema_version != 2 {
        return Err(wrong(format!(
            "the manifest's schemaVersion is {}, not 2",
            manifest.schema_version
        )));
    }
    if let Some(config) = &manifest.config
        && config.media_type == "application/vnd.oci.image.config.v1+json"
    {
        return Err(wrong(
            "the manifest is a container image (its config is application/vnd.oci.image.config.v1+json)"
                .into(),
        ));
    }
    match manifest.layers.as_slice() {
        [layer] if layer.media_type == WASM_LAYER || layer.media_type == WASM_CONTENT_LAYER => {
            reference::parse_digest(&layer.digest)
                .map_err(|e| wrong(format!("its layer's {e}")))?;
            Ok(layer)
        }
        [layer] => Err(wrong(format!(
            "its layer's media type is {}",
            layer.media_type
        ))),
        layers => Err(wrong(format!("it has {} layers, not one", layers.len()))),
    }
}

/// The pulled-blob cache: `oci/` under the compile cache folder, content-addressed.
#[derive(Debug, Clone)]
pub struct BlobCache {
    dir: Option<PathBuf>,
}

impl BlobCache {
    /// A cache in `dir` (created 0700 when something is first stored), or none.
    pub fn at(dir: Option<PathBuf>) -> BlobCache {
        BlobCache { dir }
    }

    /// The folder, created (0700) if missing.
    fn ensure(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        match &self.dir {
            Some(dir) => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir),
            None => Ok(()),
        }
    }

    fn path(&self, digest: &str, what: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        Some(self.dir.as_ref()?.join(format!("sha256-{hex}.{what}")))
    }

    /// A cached entry whose bytes hash to `digest` (anything else is a miss, and removed).
    fn get(&self, digest: &str, what: &str, cap: usize) -> Option<Vec<u8>> {
        let path = self.path(digest, what)?;
        let cap = crate::files::Cap {
            bytes: u64::try_from(cap).unwrap_or(u64::MAX),
            what: "a cached OCI blob",
            advice: "remove the cache folder",
        };
        let bytes = crate::files::read_bytes(&path, &cap).ok()?;
        if reference::digest_of(&bytes) == digest {
            Some(bytes)
        } else {
            tracing::warn!(path = %path.display(), "cached OCI blob does not match its digest; fetching again");
            let _ = std::fs::remove_file(&path);
            None
        }
    }

    /// Store `bytes` under `digest`: a temporary file in the same folder, synced, renamed.
    fn put(&self, digest: &str, what: &str, bytes: &[u8]) {
        let Some(path) = self.path(digest, what) else {
            return;
        };
        if let Err(e) = self
            .ensure()
            .and_then(|()| crate::files::write_atomic(&path, bytes))
        {
            tracing::warn!(path = %path.display(), "could not write the OCI blob cache: {e}");
        }
    }

    /// Cached signature evidence for `digest`.
    fn evidence(&self, digest: &str) -> Option<cosign::Evidence> {
        let path = self.path(digest, "sig.json")?;
        let bytes = crate::files::read_bytes(&path, &crate::files::SMALL_FILE).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn put_evidence(&self, digest: &str, evidence: &cosign::Evidence) {
        if let (Some(path), Ok(bytes)) =
            (self.path(digest, "sig.json"), serde_json::to_vec(evidence))
            && let Err(e) = self
                .ensure()
                .and_then(|()| crate::files::write_atomic(&path, &bytes))
        {
            tracing::warn!(path = %path.display(), "could not write the OCI signature cache: {e}");
        }
    }
}

/// What a pull produced.
#[derive(Debug)]
pub struct Pulled {
    /// The component's bytes.
    pub bytes: Vec<u8>,
    /// The layer's digest (`sha256:…`): the component's sha256.
    pub layer_digest: String,
    /// Whether nothing was asked of the registry.
    pub from_cache: bool,
}

/// Pull the component `source` pins (whose digest must be set): signature first when a
/// key is given (or `require_signed`), then the manifest, then the layer; each checked
/// against its digest; the cache first. Bounded by `source.timeout` as a whole.
pub async fn pull(
    source: &OciSource,
    cache: &BlobCache,
    max_component_bytes: usize,
    require_signed: bool,
) -> Result<Pulled, OciError> {
    let timeout = source.timeout;
    match tokio::time::timeout(
        timeout.saturating_add(Duration::from_millis(500)),
        pull_inner(source, cache, max_component_bytes, require_signed),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(OciError {
            failure: OciFailure::PullFailed,
            message: format!(
                "{}: the pull took longer than {timeout:?}; is the registry up? (pullTimeout raises the limit)",
                source.reference.registry
            ),
        }),
    }
}

async fn pull_inner(
    source: &OciSource,
    cache: &BlobCache,
    max_component_bytes: usize,
    require_signed: bool,
) -> Result<Pulled, OciError> {
    let reference = &source.reference;
    let digest = reference.digest.clone().ok_or_else(|| OciError {
        failure: OciFailure::PullFailed,
        message: format!(
            "{reference} is not pinned by digest; `rollgate plugin pull {reference}` prints the digest to pin"
        ),
    })?;
    let key = match &source.cosign_key {
        Some(path) => Some(cosign::PublicKey::read(path)?),
        None if require_signed => {
            return Err(OciError {
                failure: OciFailure::Unsigned,
                message: "rollgate runs with --require-signed-plugins and this plugin names no key: add verify.cosign.publicKey (file:PATH) with the key it is signed with".into(),
            });
        }
        None => None,
    };
    // The registry, built only if something is not in the cache.
    let mut registry: Option<client::Registry> = None;
    let connect = |registry: &mut Option<client::Registry>| -> Result<(), OciError> {
        if registry.is_none() {
            *registry = Some(client::Registry::new(
                &reference.registry,
                &reference.repository,
                &source.access()?,
            )?);
        }
        Ok(())
    };
    let mut from_cache = true;
    // 1. The signature, over the pinned digest.
    if let Some(key) = &key {
        let cached = cache
            .evidence(&digest)
            .filter(|e| cosign::check(e, key, &digest).is_ok());
        if cached.is_none() {
            connect(&mut registry)?;
            let r = registry.as_ref().ok_or_else(unreachable)?;
            let evidence = cosign::verify(r, reference, &digest, key).await?;
            cache.put_evidence(&digest, &evidence);
            from_cache = false;
        }
    }
    // 2. The manifest, by the verified digest, re-hashed.
    let manifest_bytes = match cache.get(&digest, "manifest", client::MAX_MANIFEST_BYTES) {
        Some(bytes) => bytes,
        None => {
            connect(&mut registry)?;
            let r = registry.as_ref().ok_or_else(unreachable)?;
            let fetched = r.manifest(&digest).await.map_err(|e| match e.failure {
                OciFailure::NotFound => OciError {
                    failure: OciFailure::PullFailed,
                    message: format!("{}; is the digest right?", e.message),
                },
                _ => e,
            })?;
            let actual = reference::digest_of(&fetched.bytes);
            if actual != digest {
                return Err(OciError {
                    failure: OciFailure::DigestMismatch,
                    message: format!(
                        "the registry served a manifest for {digest} whose bytes are {actual}: the registry is broken or tampered with"
                    ),
                });
            }
            // Check it is a component before caching it.
            let manifest: Manifest = parse_manifest(&fetched.bytes)?;
            component_layer(&manifest, &fetched.media_type)?;
            cache.put(&digest, "manifest", &fetched.bytes);
            from_cache = false;
            fetched.bytes
        }
    };
    let manifest = parse_manifest(&manifest_bytes)?;
    let layer = component_layer(&manifest, "")?;
    if layer.size > u64::try_from(max_component_bytes).unwrap_or(u64::MAX) {
        return Err(OciError {
            failure: OciFailure::ComponentTooLarge,
            message: format!(
                "the component layer is {} bytes, over the limit of {max_component_bytes} bytes; raise limits.maxComponentBytes if it is trusted",
                layer.size
            ),
        });
    }
    // 3. The component, re-hashed against the layer digest.
    let bytes = match cache.get(&layer.digest, "wasm", max_component_bytes) {
        Some(bytes) => bytes,
        None => {
            connect(&mut registry)?;
            let r = registry.as_ref().ok_or_else(unreachable)?;
            let bytes = r.blob(&layer.digest, max_component_bytes).await?;
            let actual = reference::digest_of(&bytes);
            if actual != layer.digest {
                return Err(OciError {
                    failure: OciFailure::DigestMismatch,
                    message: format!(
                        "the manifest's layer is {} but the registry served bytes of {actual}: the registry is broken or tampered with",
                        layer.digest
                    ),
                });
            }
            cache.put(&layer.digest, "wasm", &bytes);
            from_cache = false;
            bytes
        }
    };
    Ok(Pulled {
        bytes,
        layer_digest: layer.digest.clone(),
        from_cache,
    })
}

fn unreachable() -> OciError {
    OciError {
        failure: OciFailure::PullFailed,
        message: "internal: no registry client".into(),
    }
}

fn parse_manifest(bytes: &[u8]) -> Result<Manifest, OciError> {
    serde_json::from_slice(bytes).map_err(|e| OciError {
        failure: OciFailure::WrongMediaType,
        message: format!("the manifest is not an OCI manifest: {e}"),
    })
}

/// The digest a tag (or digest) points at now, as `rollgate plugin pull` prints it.
pub async fn resolve(reference: &OciRef, access: &Access) -> Result<String, OciError> {
    let registry = client::Registry::new(&reference.registry, &reference.repository, access)?;
    let fetched = registry.manifest(reference.reference()).await?;
    let digest = reference::digest_of(&fetched.bytes);
    if let Some(pinned) = &reference.digest
        && *pinned != digest
    {
        return Err(OciError {
            failure: OciFailure::DigestMismatch,
            message: format!("the registry served bytes of {digest} for {pinned}"),
        });
    }
    let manifest = parse_manifest(&fetched.bytes)?;
    component_layer(&manifest, &fetched.media_type)?;
    Ok(digest)
}

/// Which artifact convention to publish with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Convention {
    /// CNCF TAG Runtime's: `application/vnd.wasm.config.v0+json` + `application/wasm`.
    #[default]
    Cncf,
    /// wasm-to-oci's: `application/vnd.wasm.config.v1+json` +
    /// `application/vnd.wasm.content.layer.v1+wasm`.
    WasmToOci,
}

/// Publish `component` at `reference` (a tag); the manifest digest to pin.
pub async fn push(
    reference: &OciRef,
    access: &Access,
    component: &[u8],
    convention: Convention,
) -> Result<String, OciError> {
    let registry = client::Registry::new(&reference.registry, &reference.repository, access)?;
    let layer_digest = registry.push_blob(component).await?;
    let (config_type, layer_type, config) = match convention {
        Convention::Cncf => (
            WASM_CONFIG_V0,
            WASM_LAYER,
            serde_json::json!({
                "architecture": "wasm",
                "os": "wasip2",
                "layerDigests": [layer_digest],
            }),
        ),
        Convention::WasmToOci => (WASM_CONFIG_V1, WASM_CONTENT_LAYER, serde_json::json!({})),
    };
    let config = serde_json::to_vec(&config).map_err(|e| OciError {
        failure: OciFailure::PullFailed,
        message: format!("cannot write the config: {e}"),
    })?;
    let config_digest = registry.push_blob(&config).await?;
    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": layer_type, "size": component.len(), "digest": layer_digest}],
    });
    if convention == Convention::Cncf {
        manifest["artifactType"] = serde_json::json!(WASM_CONFIG_V0);
    }
    let manifest = serde_json::to_vec(&manifest).map_err(|e| OciError {
        failure: OciFailure::PullFailed,
        message: format!("cannot write the manifest: {e}"),
    })?;
    registry
        .push_manifest(reference.reference(), OCI_MANIFEST, &manifest)
        .await
}

/// Check the cosign signature of `reference`'s digest with `key`, asking the registry
/// (`rollgate plugin pull --key` without `--out`).
pub async fn verify_signature(
    reference: &OciRef,
    access: &Access,
    key: &cosign::PublicKey,
) -> Result<(), OciError> {
    let digest = reference.digest.as_deref().ok_or_else(|| OciError {
        failure: OciFailure::PullFailed,
        message: format!("{reference}: a signature is checked for a digest"),
    })?;
    let registry = client::Registry::new(&reference.registry, &reference.repository, access)?;
    cosign::verify(&registry, reference, digest, key)
        .await
        .map(|_| ())
}

/// Sign `reference` (its digest) with `key`.
pub async fn sign(
    reference: &OciRef,
    access: &Access,
    key: &cosign::SigningKey,
) -> Result<String, OciError> {
    let digest = reference.digest.clone().ok_or_else(|| OciError {
        failure: OciFailure::PullFailed,
        message: format!(
            "{reference}: sign a digest (`rollgate plugin pull {reference}` prints it)"
        ),
    })?;
    let registry = client::Registry::new(&reference.registry, &reference.repository, access)?;
    // The digest must exist and be a component before a signature vouches for it.
    let fetched = registry.manifest(&digest).await?;
    if reference::digest_of(&fetched.bytes) != digest {
        return Err(OciError {
            failure: OciFailure::DigestMismatch,
            message: format!("the registry served other bytes for {digest}"),
        });
    }
    component_layer(&parse_manifest(&fetched.bytes)?, &fetched.media_type)?;
    cosign::sign(&registry, reference, &digest, key).await
}
