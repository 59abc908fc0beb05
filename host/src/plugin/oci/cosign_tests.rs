//! rollgate's cosign code against signatures made by the real `cosign` binary (no cosign
//! runs here, so two published vectors stand in for it), and the reverse: what
//! `rollgate plugin sign` writes is what `cosign sign` writes, in the form cosign checks.
//!
//! Only the vectors' data (a public key, a payload, a signature, an image manifest) is
//! taken, with where it was found; nothing else.

use super::*;
use crate::plugin::oci::reference::digest_of;

/// Vector 1. From sigstore/sigstore-rs, `src/crypto/verification_key.rs`
/// (`verify_signature_success`) and `src/cosign/signature_layers.rs`
/// (`build_correct_signature_layer_without_bundle`), commit
/// 038e36aefac21dd4ae608cda33736a494250fd1f; first added in 58f2a505 ("initial
/// implementation", Oct 2021) by Flavio Castelli, who signed
/// `registry-testing.svc.lan/busybox` (Kubewarden's test registry) with `cosign sign --key`:
/// the payload is Go's encoding/json of cosign's `payload.SimpleContainerImage` and the
/// signature an ASN.1 DER ECDSA P-256 one, as only cosign writes them. Checked outside
/// rollgate too: `openssl dgst -sha256 -verify` says `Verified OK`.
mod sigstore_rs {
    pub const PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu
OSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==
-----END PUBLIC KEY-----
";
    pub const PAYLOAD: &str = r#"{"critical":{"identity":{"docker-reference":"registry-testing.svc.lan/busybox"},"image":{"docker-manifest-digest":"sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"},"type":"cosign container image signature"},"optional":null}"#;
    pub const SIGNATURE: &str = "MEUCIQD6q/COgzOyW0YH1Dk+CCYSt4uAhm3FDHUwvPI55zwnlwIgE0ZK58ZOWpZw8YVmBapJhBqCfdPekIknimuO0xH8Jh8=";
    pub const DIGEST: &str =
        "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b";
}

/// Vector 2. From containers/image, `signature/fixtures/cosign.pub` and
/// `signature/fixtures/dir-img-cosign-valid/{manifest.json,signature-1}`, commit
/// df7e80d2d19872b61f352a8a182ec934dc0c2346; added in 64756915 ("Add Cosign verification
/// support", Jul 2022) by Miloslav Trmač: an image pushed to a local registry
/// (`192.168.64.2:5000/cosign-signed-single-sample`), signed there with `cosign sign --key`
/// and copied with its signature by skopeo. `signature-1` is containers/image's envelope of
/// the `.sig` layer: its `payload` is the layer blob (base64) and its annotation the one
/// cosign wrote. The image manifest is kept byte for byte, so the whole chain is checked:
/// manifest bytes → digest → signed payload → signature.
mod containers_image {
    pub const PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFNLqFhf4fiN6o/glAuYnq2jYUeL0
vRuLu/z39pmbVwS9ff5AYnlwaP9sxREajdLY9ynM6G1sy6AAmb7Z63TsLg==
-----END PUBLIC KEY-----
";
    /// The signed image's manifest, exactly as stored (no final newline).
    pub const IMAGE_MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1512,"digest":"sha256:961769676411f082461f9ef46626dd7a2d1e2b2a38e6a44364bcbecf51e66dd4"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2896510,"digest":"sha256:9d16cba9fb961d1aafec9542f2bf7cb64acfc55245f9e4eb5abecd4cdc38d749"}]}"#;
    /// The signature layer's blob, base64, as `signature-1` carries it.
    pub const PAYLOAD_B64: &str = "eyJjcml0aWNhbCI6eyJpZGVudGl0eSI6eyJkb2NrZXItcmVmZXJlbmNlIjoiMTkyLjE2OC42NC4yOjUwMDAvY29zaWduLXNpZ25lZC1zaW5nbGUtc2FtcGxlIn0sImltYWdlIjp7ImRvY2tlci1tYW5pZmVzdC1kaWdlc3QiOiJzaGEyNTY6NjM0YThmMzViNWYxNmRjZjRhYWEwODIyYWRjMGIxOTY0YmI3ODZmY2ExMmY2ODMxZGU4ZGRjNDVlNTk4NmEwMCJ9LCJ0eXBlIjoiY29zaWduIGNvbnRhaW5lciBpbWFnZSBzaWduYXR1cmUifSwib3B0aW9uYWwiOm51bGx9";
    pub const SIGNATURE: &str = "MEYCIQDmtamqYPjMg81nqeBhptrPls44aA/r7PwLmspINJY4MwIhANKRpqe2E9UCBtGFdPoz/8jAbaQm4uP4h+IpwKTE6ClR";
    /// The repository cosign named in the payload.
    pub const REPOSITORY: &str = "192.168.64.2:5000/cosign-signed-single-sample";
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn key(pem: &str) -> PublicKey {
    match PublicKey::parse(pem.as_bytes(), "test.pub") {
        Ok(k) => k,
        Err(e) => panic!("the vector's key does not parse: {e}"),
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
    let der = b64()
        .decode(signature)
        .expect("the vector's signature is base64");
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

#[test]
fn a_signature_made_by_cosign_verifies_and_a_flipped_byte_does_not() {
    let k = key(sigstore_rs::PUBLIC_KEY);
    let payload = sigstore_rs::PAYLOAD.as_bytes();
    let good = evidence(payload, sigstore_rs::SIGNATURE);
    check(&good, &k, sigstore_rs::DIGEST).expect("cosign's signature verifies");
    assert_eq!(
        signed_digest(payload).expect("payload"),
        sigstore_rs::DIGEST
    );
    each_flip_is_refused(payload, sigstore_rs::SIGNATURE, &k, sigstore_rs::DIGEST);
    // Valid, but for another digest than the one pinned.
    let other = format!("sha256:{}", "0".repeat(64));
    refused(&good, &k, &other, "not the pinned");
    // Valid for this vector, checked with the other vector's key.
    refused(
        &good,
        &key(containers_image::PUBLIC_KEY),
        sigstore_rs::DIGEST,
        "does not verify",
    );
}

#[test]
fn a_cosign_signed_image_verifies_from_its_manifest_bytes_to_the_signature() {
    let k = key(containers_image::PUBLIC_KEY);
    // The pinned digest is the manifest's own hash, as a Plugin's source would pin it.
    let digest = digest_of(containers_image::IMAGE_MANIFEST.as_bytes());
    assert_eq!(
        digest,
        "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
    );
    let good = Evidence {
        payload: containers_image::PAYLOAD_B64.to_string(),
        signature: containers_image::SIGNATURE.to_string(),
    };
    check(&good, &k, &digest).expect("cosign's signature verifies");
    let payload = b64()
        .decode(containers_image::PAYLOAD_B64)
        .expect("the vector's payload is base64");
    each_flip_is_refused(&payload, containers_image::SIGNATURE, &k, &digest);
    // The image manifest changed by one byte: its digest is no longer the signed one.
    let mut changed = containers_image::IMAGE_MANIFEST.as_bytes().to_vec();
    if let Some(b) = changed.iter_mut().find(|b| **b == b'1') {
        *b = b'2';
    }
    refused(&good, &k, &digest_of(&changed), "not the pinned");
}

#[test]
fn what_rollgate_signs_is_what_cosign_signs_byte_for_byte() {
    // cosign's payload for this repository and digest, as cosign wrote it (vector 2) …
    let cosign = b64()
        .decode(containers_image::PAYLOAD_B64)
        .expect("the vector's payload is base64");
    let digest = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00";
    // … and rollgate's, for the same: the same bytes, so cosign's claim check (the
    // `docker-manifest-digest` of that JSON) reads what it reads in its own.
    let ours = payload(containers_image::REPOSITORY, digest).expect("payload");
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&cosign)
    );
    // Vector 1 too: another repository and digest, the same form.
    let ours = payload("registry-testing.svc.lan/busybox", sigstore_rs::DIGEST).expect("payload");
    assert_eq!(ours, sigstore_rs::PAYLOAD.as_bytes());
}

#[test]
fn what_rollgate_signs_verifies_as_cosign_verifies() {
    use aws_lc_rs::signature::KeyPair as _;
    // A fresh P-256 key, as `cosign generate-key-pair` makes (rollgate reads its PKCS#8 form).
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .expect("generate");
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("cosign.key");
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        b64().encode(pkcs8.as_ref())
    );
    std::fs::write(&key_path, pem).expect("write key");
    let pair = signing_key(&key_path).expect("the key reads");
    let digest = containers_image::IMAGE_MANIFEST;
    let digest = digest_of(digest.as_bytes());
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
    let spki = spki_pem(pair.public_key().as_ref());
    let k = key(&spki);
    check(&evidence(&payload, &sig), &k, &digest).expect("our signature verifies");
    each_flip_is_refused(&payload, &sig, &k, &digest);
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
    // sigstore/cosign; the layer's size and digest are those of vector 2's payload), with a
    // second, non-signature layer and a layer without the annotation, both passed over.
    let payload = b64().decode(containers_image::PAYLOAD_B64).expect("base64");
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
                 SIGNATURE_ANNOTATION: containers_image::SIGNATURE,
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
    let digest = digest_of(containers_image::IMAGE_MANIFEST.as_bytes());
    check(
        &evidence(&payload, layer.signature),
        &key(containers_image::PUBLIC_KEY),
        &digest,
    )
    .expect("verifies");
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
