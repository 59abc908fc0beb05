//! `rollgate plugin push|pull|sign`: the plugin author's side of OCI distribution.
//!
//! - `push FILE oci://REGISTRY/REPO:TAG`: publishes the component; prints the digest to pin.
//! - `pull oci://REGISTRY/REPO(:TAG|@sha256:…) [--out FILE]`: prints the digest a tag
//!   points at (what a Plugin document pins); with `--out`, fetches the component, checking
//!   the manifest and layer digests, and writes it.
//! - `sign --key KEY.pem oci://REGISTRY/REPO@sha256:…`: pushes a cosign signature.
//!
//! Exit 0 done, 3 the registry failed or refused, 4 invalid input.

use super::{Out, exit};
use crate::metrics::secret::SecretRef;
use crate::plugin::oci::{self, Access, Convention, OciRef, OciSource};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// How to reach the registry.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// The registry username, by reference: env:NAME or file:PATH.
    #[arg(long, value_name = "REF", requires = "password")]
    username: Option<String>,
    /// The registry password or token, by reference: env:NAME or file:PATH.
    #[arg(long, value_name = "REF", requires = "username")]
    password: Option<String>,
    /// Plain HTTP (a local registry only).
    #[arg(long)]
    insecure: bool,
    /// A PEM bundle of CA certificates to trust for the registry.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca_file: Option<PathBuf>,
    /// The longest each request may take.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    timeout: String,
}

impl RegistryArgs {
    fn source(&self, reference: OciRef) -> Result<OciSource, String> {
        let parse = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|v| SecretRef::parse(v).map_err(|e| format!("--{flag}: {e}")))
                .transpose()
        };
        let mut source = OciSource::new(reference);
        source.username = parse("username", &self.username)?;
        source.password = parse("password", &self.password)?;
        source.insecure = self.insecure;
        source.ca_file = self.ca_file.clone();
        let ms =
            rollgate_duration::parse_ms(&self.timeout).map_err(|e| format!("--timeout: {e}"))?;
        if ms == 0 {
            return Err("--timeout: must be positive".into());
        }
        source.timeout = std::time::Duration::from_millis(ms);
        Ok(source)
    }
}

/// Which artifact convention to publish with.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum ConventionArg {
    /// `application/vnd.wasm.config.v0+json` + `application/wasm` (CNCF TAG Runtime).
    #[default]
    Cncf,
    /// `application/vnd.wasm.content.layer.v1+wasm` (wasm-to-oci).
    WasmToOci,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The component file.
    file: PathBuf,
    /// Where to publish it: oci://REGISTRY/REPO:TAG.
    reference: String,
    /// The artifact convention.
    #[arg(long, value_enum, default_value_t)]
    convention: ConventionArg,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// oci://REGISTRY/REPO:TAG or oci://REGISTRY/REPO@sha256:DIGEST.
    reference: String,
    /// Write the component here (checked against the manifest and layer digests).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Check the digest's cosign signature with this PEM public key (first, when with --out).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The largest component accepted, in MiB.
    #[arg(long, default_value_t = 8, value_name = "MIB")]
    max_component_mib: u64,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The PKCS#8 PEM EC P-256 private key (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// What to sign: oci://REGISTRY/REPO@sha256:DIGEST.
    reference: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

fn invalid(message: String) -> u8 {
    let mut out = Out::default();
    out.err(format!("rollgate: {message}"));
    out.flush();
    exit::INVALID_INPUT
}

fn failed(e: &oci::OciError) -> u8 {
    let mut out = Out::default();
    out.err(format!("rollgate: {e}"));
    out.flush();
    exit::PLUGIN_ERROR
}

fn prepare(reference: &str, registry: &RegistryArgs) -> Result<(OciSource, Access), u8> {
    let reference = OciRef::parse(reference).map_err(invalid)?;
    let source = registry.source(reference).map_err(invalid)?;
    let access = source.access().map_err(|e| invalid(e.message))?;
    Ok((source, access))
}

pub async fn push(args: PushArgs) -> u8 {
    let (source, access) = match prepare(&args.reference, &args.registry) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let reference = &source.reference;
    if reference.tag.is_none() || reference.digest.is_some() {
        return invalid(format!(
            "push to a tag: oci://{}/{}:TAG (the digest is what push prints)",
            reference.registry, reference.repository
        ));
    }
    let cap = crate::files::Cap {
        bytes: crate::plugin::limits::ceiling::COMPONENT_BYTES,
        what: "a component",
        advice: "is it really a plugin?",
    };
    let bytes = match crate::files::read_bytes(&args.file, &cap) {
        Ok(b) => b,
        Err(e) => return invalid(e.describe(&args.file)),
    };
    // A component's header: the wasm magic, then version 0x0d and layer 1.
    if !bytes.starts_with(b"\0asm") || bytes.get(4..8) != Some(&[0x0d, 0x00, 0x01, 0x00]) {
        return invalid(format!(
            "{} is not a WebAssembly component (build the plugin for wasm32-wasip2)",
            args.file.display()
        ));
    }
    let convention = match args.convention {
        ConventionArg::Cncf => Convention::Cncf,
        ConventionArg::WasmToOci => Convention::WasmToOci,
    };
    match oci::push(reference, &access, &bytes, convention).await {
        Ok(digest) => {
            let mut out = Out::default();
            out.line(&digest);
            out.err(format!(
                "pushed {} ({} bytes); pin it as source: oci://{}/{}@{digest}",
                reference,
                bytes.len(),
                reference.registry,
                reference.repository
            ));
            out.flush();
            exit::OK
        }
        Err(e) => failed(&e),
    }
}

pub async fn pull(args: PullArgs) -> u8 {
    let (mut source, access) = match prepare(&args.reference, &args.registry) {
        Ok(p) => p,
        Err(code) => return code,
    };
    // A key that cannot be read is the operator's input: refused before the registry is asked.
    let key = match args.key.as_deref().map(oci::cosign::PublicKey::read) {
        Some(Err(e)) => return invalid(e.message),
        Some(Ok(k)) => Some(k),
        None => None,
    };
    let digest = match oci::resolve(&source.reference, &access).await {
        Ok(d) => d,
        Err(e) => return failed(&e),
    };
    let pinned = source.reference.at_digest(&digest);
    let mut out = Out::default();
    if let Some(path) = &args.out {
        let Some(max) = args
            .max_component_mib
            .checked_mul(1 << 20)
            .filter(|b| *b <= crate::plugin::limits::ceiling::COMPONENT_BYTES)
            .and_then(|b| usize::try_from(b).ok())
        else {
            return invalid(format!(
                "--max-component-mib {}: at most {} MiB",
                args.max_component_mib,
                crate::plugin::limits::ceiling::COMPONENT_BYTES >> 20
            ));
        };
        source.reference = pinned.clone();
        source.cosign_key = args.key.clone();
        let pulled = match oci::pull(&source, &oci::BlobCache::at(None), max, false).await {
            Ok(p) => p,
            Err(e) => return failed(&e),
        };
        if let Err(e) = crate::files::write_atomic(path, &pulled.bytes) {
            return invalid(format!("cannot write {}: {e}", path.display()));
        }
        out.err(format!(
            "wrote {} ({} bytes, component sha256 {})",
            path.display(),
            pulled.bytes.len(),
            pulled.layer_digest
        ));
    } else if let Some(key) = &key {
        // Without --out the signature is still checked: --key is never ignored.
        if let Err(e) = oci::verify_signature(&pinned, &access, key).await {
            return failed(&e);
        }
        out.err(format!(
            "the cosign signature of {digest} verifies with the key"
        ));
    }
    out.line(&digest);
    out.err(format!("pin it as source: {pinned}"));
    out.flush();
    exit::OK
}

pub async fn sign(args: SignArgs) -> u8 {
    let (source, access) = match prepare(&args.reference, &args.registry) {
        Ok(p) => p,
        Err(code) => return code,
    };
    // A key that cannot sign is the operator's input: refused before the registry is asked.
    let key = match oci::cosign::SigningKey::read(&args.key) {
        Ok(k) => k,
        Err(e) => return invalid(e.message),
    };
    match oci::sign(&source.reference, &access, &key).await {
        Ok(digest) => {
            let mut out = Out::default();
            out.line(&digest);
            out.err(format!(
                "signed {}; the signature is {} in the same repository",
                source.reference,
                oci::cosign::signature_tag(source.reference.digest.as_deref().unwrap_or(""))
            ));
            out.flush();
            exit::OK
        }
        Err(e) => failed(&e),
    }
}
