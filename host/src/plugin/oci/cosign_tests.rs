//! rollgate's cosign code against cosign's format: what `rollgate plugin sign` writes is
//! what `cosign verify --key` checks (a standard-base64 ASN.1 DER ECDSA P-256 signature of
//! the simple-signing payload, carried in the `.sig` manifest's annotation), and whatever is
//! changed in it is refused. Signatures made by the real `cosign` were checked against this
//! verifier by hand (no cosign runs here, and the vectors it was checked with are not kept
//! in the repository).

use super::*;
use crate::plugin::oci::reference::digest_of;
use aws_lc_rs::signature::KeyPair as _;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn key(pem: &str) -> PublicKey {
    match PublicKey::parse(pem.as_bytes(), "test.pub") {
        Ok(k) => k,
        Err(e) => panic!("the key does not parse: {e}"),
    }
}

fn evidence(payload: &[u8], signature: &str) -> Evidence {
    Evidence {
        payload: b64().encode(payload),
        signature: signature.to_string(),
    }
}

/// `check` refuses with `signature-invalid`, saying `what`.
fn refused(evidence: &Evidence, key: &PublicKey, digest: &str, what: &str) {
    match check(evidence, key, digest) {
        Ok(()) => panic!("accepted, expected a refusal saying {what:?}"),
        Err(e) => {
            assert_eq!(e.failure, OciFailure::SignatureInvalid, "{e}");
            assert_eq!(e.failure.kind(), "signature-invalid");
            assert!(e.message.contains(what), "{e}");
        }
    }
}

/// Each payload byte flipped in turn (every bit of it), and a byte of the DER signature.
fn each_flip_is_refused(payload: &[u8], signature: &str, key: &PublicKey, digest: &str) {
    for i in 0..payload.len() {
        let mut p = payload.to_vec();
        p[i] ^= 0x01;
        refused(&evidence(&p, signature), key, digest, "does not verify");
    }
    let der = b64().decode(signature).expect("the signature is base64");
    for i in 0..der.len() {
        let mut d = der.clone();
        d[i] ^= 0x01;
        refused(
            &evidence(payload, &b64().encode(&d)),
            key,
            digest,
            "does not verify",
        );
    }
}

/// A fresh P-256 key, as `cosign generate-key-pair` makes (rollgate reads its PKCS#8
/// form), written where `plugin sign --key` reads it; the pair and its public key.
fn fresh_key(dir: &Path) -> (EcdsaKeyPair, PublicKey) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .expect("generate");
    let key_path = dir.join("cosign.key");
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        b64().encode(pkcs8.as_ref())
    );
    std::fs::write(&key_path, pem).expect("write key");
    let pair = signing_key(&key_path).expect("the key reads");
    let public = key(&spki_pem(pair.public_key().as_ref()));
    (pair, public)
}

#[test]
fn the_payload_is_cosigns_simple_signing_document() {
    let digest = digest_of(b"a manifest");
    let payload = payload("registry.example/plugins/latency", &digest).expect("payload");
    // Go's encoding/json of cosign's payload.SimpleContainerImage: keys sorted, no spaces.
    assert_eq!(
        String::from_utf8_lossy(&payload),
        format!(
            "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"registry.example/plugins/latency\"}},\
             \"image\":{{\"docker-manifest-digest\":\"{digest}\"}},\
             \"type\":\"cosign container image signature\"}},\"optional\":null}}"
        )
    );
    assert_eq!(signed_digest(&payload).expect("payload"), digest);
}

#[test]
fn what_rollgate_signs_verifies_as_cosign_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pair, k) = fresh_key(dir.path());
    let digest = digest_of(b"a manifest");
    let payload = payload("registry.example/plugins/latency", &digest).expect("payload");
    let sig = sign_payload(&pair, &payload).expect("sign");
    // cosign decodes the annotation with Go's base64.StdEncoding (padded, no newlines) …
    let der = b64().decode(&sig).expect("standard base64");
    assert!(!sig.contains('\n') && sig.len().is_multiple_of(4), "{sig}");
    // … and checks SHA-256(payload) with ecdsa.VerifyASN1: a DER SEQUENCE of r and s, not
    // the 64-byte r||s. Check the DER shape by hand, then the signature with the public key
    // as a PEM SubjectPublicKeyInfo, as `cosign.pub` holds it.
    assert_eq!(der[0], 0x30, "not a DER SEQUENCE: {der:02x?}");
    assert_eq!(usize::from(der[1]) + 2, der.len(), "{der:02x?}");
    assert_eq!(der[2], 0x02, "r is not a DER INTEGER: {der:02x?}");
    check(&evidence(&payload, &sig), &k, &digest).expect("our signature verifies");
    each_flip_is_refused(&payload, &sig, &k, &digest);
    // Valid, but for another digest than the one pinned.
    refused(
        &evidence(&payload, &sig),
        &k,
        &format!("sha256:{}", "0".repeat(64)),
        "not the pinned",
    );
    // Valid, checked with another key.
    let other = tempfile::tempdir().expect("tempdir");
    let (_, another) = fresh_key(other.path());
    refused(
        &evidence(&payload, &sig),
        &another,
        &digest,
        "does not verify",
    );
}

/// The PEM SubjectPublicKeyInfo of an uncompressed P-256 point (`cosign.pub`'s form).
fn spki_pem(point: &[u8]) -> String {
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) point }
    const PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    assert_eq!(point.len(), 65, "an uncompressed P-256 point");
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(point);
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        b64().encode(der)
    )
}

#[test]
fn a_signature_manifest_in_cosigns_layout_is_read() {
    // The layout of the `.sig` manifest cosign pushes (specs/SIGNATURE_SPEC.md of
    // sigstore/cosign), with a second, non-signature layer and a layer without the
    // annotation, both passed over.
    let dir = tempfile::tempdir().expect("tempdir");
    let (pair, k) = fresh_key(dir.path());
    let digest = digest_of(b"a manifest");
    let payload = payload("registry.example/plugins/latency", &digest).expect("payload");
    let sig = sign_payload(&pair, &payload).expect("sign");
    let text = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": 233,
            "digest": format!("sha256:{}", "a".repeat(64)),
        },
        "layers": [
            {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
             "size": payload.len(), "digest": digest_of(&payload)},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar",
             "size": 1, "digest": format!("sha256:{}", "b".repeat(64)),
             "annotations": {SIGNATURE_ANNOTATION: "x"}},
            {"mediaType": SIMPLESIGNING, "size": payload.len(), "digest": digest_of(&payload),
             "annotations": {
                 SIGNATURE_ANNOTATION: sig,
                 "dev.sigstore.cosign/bundle": "{}",
             }},
        ],
    })
    .to_string();
    let manifest: super::super::Manifest = serde_json::from_str(&text).expect("parses");
    let layers = signature_layers(&manifest);
    assert_eq!(layers.len(), 1);
    let layer = match &layers[0] {
        Ok(layer) => layer,
        Err(e) => panic!("the signature layer is refused: {e}"),
    };
    assert_eq!(layer.digest, digest_of(&payload));
    check(&evidence(&payload, layer.signature), &k, &digest).expect("verifies");
}

#[test]
fn a_signature_layer_that_cannot_be_fetched_safely_is_refused_unfetched() {
    let text = serde_json::json!({
        "schemaVersion": 2,
        "layers": [
            {"mediaType": SIMPLESIGNING, "size": 10, "digest": "sha256:../../../v2/other/blobs/x",
             "annotations": {SIGNATURE_ANNOTATION: "MEUC"}},
            {"mediaType": SIMPLESIGNING, "size": 1u64 << 40,
             "digest": format!("sha256:{}", "c".repeat(64)),
             "annotations": {SIGNATURE_ANNOTATION: "MEUC"}},
        ],
    })
    .to_string();
    let manifest: super::super::Manifest = serde_json::from_str(&text).expect("parses");
    let said: Vec<String> = signature_layers(&manifest)
        .into_iter()
        .map(|r| match r {
            Ok(_) => panic!("an unsafe layer was accepted"),
            Err(e) => {
                assert_eq!(e.failure, OciFailure::SignatureInvalid);
                e.message
            }
        })
        .collect();
    assert!(
        said[0].contains("expected sha256: and 64 hex digits"),
        "{said:?}"
    );
    assert!(said[1].contains("declares 1099511627776 bytes"), "{said:?}");
}

#[test]
fn the_signature_tag_is_cosigns() {
    // specs/SIGNATURE_SPEC.md, "Tag-based Discovery".
    assert_eq!(
        signature_tag("sha256:97fc222cee7991b5b061d4d4afdb5f3428fcb0c9054e1690313786befa1e4e36"),
        "sha256-97fc222cee7991b5b061d4d4afdb5f3428fcb0c9054e1690313786befa1e4e36.sig"
    );
}

#[test]
fn a_key_that_is_not_p256_is_refused_when_read() {
    // An Ed25519 SubjectPublicKeyInfo (RFC 8410's example key).
    let ed = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
    match PublicKey::parse(ed.as_bytes(), "ed.pub") {
        Ok(_) => panic!("an Ed25519 key was accepted"),
        Err(e) => assert!(
            e.message.contains("ed.pub") && e.message.contains("P-256"),
            "{e}"
        ),
    }
    match PublicKey::parse(b"not a key", "junk.pub") {
        Ok(_) => panic!("junk was accepted"),
        Err(e) => assert!(
            e.message.contains("junk.pub") && e.message.contains("PEM"),
            "{e}"
        ),
    }
}

#[test]
fn a_cosign_encrypted_private_key_is_named_as_such() {
    // The PEM type `cosign generate-key-pair` writes (pkg/cosign/keys.go); the body does not
    // matter, only that rollgate says what the file is and what to do.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cosign.key");
    std::fs::write(
        &path,
        "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJrZGYiOnt9fQ==\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
    )
    .expect("write");
    match signing_key(&path) {
        Ok(_) => panic!("cosign's encrypted key was read"),
        Err(e) => {
            assert!(e.message.contains("cosign's encrypted key format"), "{e}");
            assert!(e.message.contains("cosign import-key-pair"), "{e}");
        }
    }
}
