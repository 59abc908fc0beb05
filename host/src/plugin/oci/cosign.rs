//! Key-based cosign signatures, offline: the `sha256-<hex>.sig` artifact beside a manifest,
//! each of whose `simplesigning` layers carries a JSON payload naming the signed manifest
//! digest and, in an annotation, a base64 ECDSA P-256 / SHA-256 (ASN.1 DER) signature of
//! that payload. rollgate checks the signature over the payload with the operator's public
//! key (PEM SubjectPublicKeyInfo), then that the payload names the pinned digest — before
//! the manifest or the component is fetched. `rollgate plugin sign` writes the same format
//! (the payload byte for byte as cosign's), so `cosign verify --key K
//! --insecure-ignore-tlog=true` accepts what it signs (the flag because it is not in Rekor).
//! `cosign_tests.rs` checks both directions against signatures made by cosign itself.

use super::client::Registry;
use super::reference::{OciRef, digest_of};
use super::{OciError, OciFailure};
use aws_lc_rs::signature::{self, EcdsaKeyPair, UnparsedPublicKey};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The layer media type of a cosign signature.
pub const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation carrying the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a cosign payload.
const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The most a payload may weigh.
const MAX_PAYLOAD_BYTES: usize = 64 << 10;
/// The most signature layers looked at.
const MAX_SIGNATURES: usize = 64;

/// The tag cosign stores the signatures of `digest` under.
pub fn signature_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1) + ".sig"
}

/// A public key to check signatures with.
pub struct PublicKey {
    der: Vec<u8>,
    path: String,
}

impl PublicKey {
    /// Read a PEM `PUBLIC KEY` (an ECDSA P-256 key, as `cosign generate-key-pair` writes).
    pub fn read(path: &Path) -> Result<PublicKey, OciError> {
        let text = crate::files::read_bytes(path, &crate::files::SMALL_FILE)
            .map_err(|e| invalid(format!("verify.cosign.publicKey: {}", e.describe(path))))?;
        PublicKey::parse(&text, &path.display().to_string())
    }

    /// Parse PEM `text` read from `path` (named in errors).
    fn parse(text: &[u8], path: &str) -> Result<PublicKey, OciError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(text).map_err(|e| {
            invalid(format!(
                "verify.cosign.publicKey: {path} is not a PEM public key (-----BEGIN PUBLIC KEY-----): {e}"
            ))
        })?;
        // An EC P-256 key parses; anything else is refused now rather than at each check.
        if aws_lc_rs::signature::ParsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_ASN1,
            der.as_ref(),
        )
        .is_err()
        {
            return Err(invalid(format!(
                "verify.cosign.publicKey: {path} is not an ECDSA P-256 public key (cosign's default)"
            )));
        }
        Ok(PublicKey {
            der: der.as_ref().to_vec(),
            path: path.to_string(),
        })
    }

    fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &self.der)
            .verify(payload, signature)
            .is_ok()
    }
}

/// What a verified signature rests on, kept in the cache so a later start re-checks it
/// offline instead of asking the registry again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evidence {
    /// The payload bytes, base64.
    pub payload: String,
    /// The signature, base64 (as the annotation carries it).
    pub signature: String,
}

/// Check `evidence` against `key` for `digest`.
pub fn check(evidence: &Evidence, key: &PublicKey, digest: &str) -> Result<(), OciError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(evidence.payload.trim())
        .map_err(|_| invalid("the signature's payload is not base64".into()))?;
    let sig = b64
        .decode(evidence.signature.trim())
        .map_err(|_| invalid("the signature annotation is not base64".into()))?;
    if !key.verifies(&payload, &sig) {
        return Err(invalid(format!(
            "the signature does not verify with the key {}",
            key.path
        )));
    }
    let signed = signed_digest(&payload)?;
    if signed != digest {
        return Err(invalid(format!(
            "the signature is valid but signs {signed}, not the pinned {digest}"
        )));
    }
    Ok(())
}

/// The `docker-manifest-digest` a payload signs, after checking its type.
fn signed_digest(payload: &[u8]) -> Result<String, OciError> {
    #[derive(Deserialize)]
    struct Payload {
        critical: Critical,
    }
    #[derive(Deserialize)]
    struct Critical {
        image: Image,
        #[serde(rename = "type")]
        kind: String,
    }
    #[derive(Deserialize)]
    struct Image {
        #[serde(rename = "docker-manifest-digest")]
        digest: String,
    }
    let p: Payload = serde_json::from_slice(payload)
        .map_err(|e| invalid(format!("the signed payload is not a cosign payload: {e}")))?;
    if p.critical.kind != PAYLOAD_TYPE {
        return Err(invalid(format!(
            "the signed payload's type is {:?}, not {PAYLOAD_TYPE:?}",
            p.critical.kind
        )));
    }
    Ok(p.critical.image.digest)
}

/// Fetch the signatures of `digest` from the registry and return the first that verifies
/// with `key` (`unsigned` when there is none, `signature-invalid` when none verifies).
pub async fn verify(
    registry: &Registry,
    reference: &OciRef,
    digest: &str,
    key: &PublicKey,
) -> Result<Evidence, OciError> {
    let tag = signature_tag(digest);
    let fetched = match registry.manifest(&tag).await {
        Ok(f) => f,
        Err(e) if e.failure == OciFailure::NotFound => {
            return Err(OciError {
                failure: OciFailure::Unsigned,
                message: format!(
                    "no cosign signature for {digest} ({} has no tag {tag}); sign it with `cosign sign --key …` or `rollgate plugin sign --key …`",
                    reference.repository_name()
                ),
            });
        }
        Err(e) => return Err(e),
    };
    let manifest: super::Manifest = serde_json::from_slice(&fetched.bytes).map_err(|e| {
        invalid(format!(
            "the signature manifest {tag} in {} is not an OCI manifest: {e}; re-sign the digest with `cosign sign --key …` or `rollgate plugin sign --key …`",
            reference.repository_name()
        ))
    })?;
    let mut last = None;
    for candidate in signature_layers(&manifest) {
        let layer = match candidate {
            Ok(layer) => layer,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let payload = match registry.blob(&layer.digest, MAX_PAYLOAD_BYTES).await {
            Ok(p) => p,
            Err(e) if e.failure == OciFailure::ComponentTooLarge => {
                last = Some(invalid(format!(
                    "a signature payload is over {MAX_PAYLOAD_BYTES} bytes"
                )));
                continue;
            }
            Err(e) => return Err(e),
        };
        if digest_of(&payload) != layer.digest {
            last = Some(invalid(format!(
                "a signature payload's bytes do not match its digest {}",
                layer.digest
            )));
            continue;
        }
        let evidence = Evidence {
            payload: base64::engine::general_purpose::STANDARD.encode(&payload),
            signature: layer.signature.to_string(),
        };
        match check(&evidence, key, digest) {
            Ok(()) => return Ok(evidence),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| OciError {
        failure: OciFailure::Unsigned,
        message: format!("the signature artifact {tag} holds no cosign signature layer"),
    }))
}

/// A signature layer of a `.sig` manifest: its payload blob and the signature over it.
struct SignatureLayer<'m> {
    /// The payload blob's digest (`sha256:<hex>`, checked: it goes into a URL).
    digest: String,
    /// The base64 signature annotation.
    signature: &'m str,
}

/// The signature layers of a `.sig` manifest in cosign's layout: its `simplesigning`
/// layers that carry the signature annotation (others are passed over, as cosign's are
/// of no use without one), at most [`MAX_SIGNATURES`]; one that cannot be fetched safely (a
/// digest that is not `sha256:<hex>`, a payload declared over the cap) as the refusal.
fn signature_layers(manifest: &super::Manifest) -> Vec<Result<SignatureLayer<'_>, OciError>> {
    manifest
        .layers
        .iter()
        .filter(|l| l.media_type == SIMPLESIGNING)
        .filter_map(|l| Some((l, l.annotations.get(SIGNATURE_ANNOTATION)?)))
        .take(MAX_SIGNATURES)
        .map(|(layer, signature)| {
            let digest = super::reference::parse_digest(&layer.digest)
                .map_err(|e| invalid(format!("a signature layer's {e}")))?;
            if layer.size > MAX_PAYLOAD_BYTES as u64 {
                return Err(invalid(format!(
                    "a signature payload declares {} bytes, over {MAX_PAYLOAD_BYTES}",
                    layer.size
                )));
            }
            Ok(SignatureLayer { digest, signature })
        })
        .collect()
}

/// Sign `digest` in `reference`'s repository with `key`, pushing (or replacing) the
/// `sha256-<hex>.sig` artifact; the signature manifest's digest.
pub async fn sign(
    registry: &Registry,
    reference: &OciRef,
    digest: &str,
    key: &SigningKey,
) -> Result<String, OciError> {
    let payload = payload(&reference.repository_name(), digest)?;
    let sig = sign_payload(&key.0, &payload)?;
    let payload_digest = registry.push_blob(&payload).await?;
    // The image config cosign writes: one layer, the payload.
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [payload_digest]},
        "config": {},
    }))
    .map_err(|e| invalid(format!("cannot write the config: {e}")))?;
    let config_digest = registry.push_blob(&config).await?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": super::OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": config_digest,
        },
        "layers": [{
            "mediaType": SIMPLESIGNING,
            "size": payload.len(),
            "digest": payload_digest,
            "annotations": {SIGNATURE_ANNOTATION: sig},
        }],
    }))
    .map_err(|e| invalid(format!("cannot write the manifest: {e}")))?;
    registry
        .push_manifest(&signature_tag(digest), super::OCI_MANIFEST, &manifest)
        .await
}

/// A private key to sign with (read before anything is asked of the registry).
pub struct SigningKey(EcdsaKeyPair);

impl SigningKey {
    /// Read the PKCS#8 PEM EC P-256 private key at `path` (`--key`).
    pub fn read(path: &Path) -> Result<SigningKey, OciError> {
        signing_key(path).map(SigningKey)
    }
}

/// The PKCS#8 PEM EC P-256 private key at `key`.
fn signing_key(key: &Path) -> Result<EcdsaKeyPair, OciError> {
    let pem = crate::files::read_bytes(key, &crate::files::SMALL_FILE)
        .map_err(|e| invalid(format!("--key: {}", e.describe(key))))?;
    // `cosign generate-key-pair` writes its own scrypt-encrypted form, which only cosign
    // reads (cosign.pub, its public half, is a plain PEM key rollgate verifies with).
    let cosigns = [
        &b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"[..],
        &b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----"[..],
    ];
    if cosigns
        .iter()
        .any(|label| pem.windows(label.len()).any(|w| w == *label))
    {
        return Err(invalid(format!(
            "--key: {} is cosign's encrypted key format, which rollgate does not read; sign with `cosign sign --key` instead, or make a PKCS#8 key with openssl for rollgate and `cosign import-key-pair --key` it for cosign (see plugins/README.md)",
            key.display()
        )));
    }
    let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|_| {
        invalid(format!(
            "--key: {} is not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----); convert one with `openssl pkcs8 -topk8 -nocrypt`",
            key.display()
        ))
    })?;
    EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        der.secret_pkcs8_der(),
    )
    .map_err(|e| {
        invalid(format!(
            "--key: {} is not an EC P-256 private key: {e}",
            key.display()
        ))
    })
}

/// The simple-signing payload `cosign sign` writes for `digest` in `repository`
/// (`REGISTRY/REPO`), byte for byte: Go's encoding/json of cosign's payload struct, whose
/// keys are in this (alphabetical) order, no spaces, `"optional":null` when no annotation.
fn payload(repository: &str, digest: &str) -> Result<Vec<u8>, OciError> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": null,
    }))
    .map_err(|e| invalid(format!("cannot write the payload: {e}")))
}

/// The base64 ASN.1 DER ECDSA P-256 signature of SHA-256(`payload`): what cosign puts in
/// the signature annotation and checks with Go's `ecdsa.VerifyASN1`.
fn sign_payload(pair: &EcdsaKeyPair, payload: &[u8]) -> Result<String, OciError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let sig = pair
        .sign(&rng, payload)
        .map_err(|_| invalid("signing failed".into()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sig.as_ref()))
}

fn invalid(message: String) -> OciError {
    OciError {
        failure: OciFailure::SignatureInvalid,
        message,
    }
}

#[cfg(test)]
#[path = "cosign_tests.rs"]
mod tests;
