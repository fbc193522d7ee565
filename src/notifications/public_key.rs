//! The RSA public keys that sign notifications (OSS's callback key, the key of MNS's
//! certificate) and the PKCS#1 v1.5 check both senders use. OpenSSL does the arithmetic: an OSS
//! callback is checked on every upload (and every forged one costs a check too), and OpenSSL
//! checks one 2.6 times as fast as the pure-Rust `rsa` crate for a 512-bit key, the size OSS
//! publishes, and 5 to 9 times as fast for 1,024 to 2,048 bits (`cargo bench --bench
//! signatures`).

use std::fmt;

use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::Rsa;
use openssl::sign::Verifier;
use openssl::x509::X509;

/// Why a notification signature was refused. Messages are shown to the caller (400
/// `invalid_signature`), so they name what was wrong and never echo keys or signatures.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// A header is missing, is not base64, or is not in the expected form.
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    /// The public key or certificate cannot be used to verify.
    #[error("unusable signing key: {0}")]
    BadKey(&'static str),
    /// The signature does not match the signed content.
    #[error("signature does not match")]
    Mismatch,
    /// The request's Date is outside the accepted window.
    #[error("request date is outside the accepted window")]
    StaleDate,
}

/// The largest modulus and public exponent accepted, as the `rsa` crate bounds them: a key
/// served from an allowed URL should still not make each check arbitrarily slow (OpenSSL
/// takes any exponent up to the modulus below 3,072 bits, and one near the modulus costs a
/// hundred times a usual check).
const MAX_BITS: u32 = 4096;
const MAX_EXPONENT_BITS: i32 = 33;

/// An RSA public key, parsed once and kept by [`super::keys`].
pub struct PublicKey(PKey<Public>);

impl PublicKey {
    /// An SPKI (`BEGIN PUBLIC KEY`, what OSS publishes) or PKCS#1 (`BEGIN RSA PUBLIC KEY`) PEM.
    pub fn from_pem(pem: &str) -> Result<PublicKey, SignatureError> {
        let pem = pem.trim().as_bytes();
        let key = if pem.starts_with(b"-----BEGIN RSA PUBLIC KEY-----") {
            Rsa::public_key_from_pem_pkcs1(pem).and_then(PKey::from_rsa)
        } else {
            PKey::public_key_from_pem(pem)
        };
        key.ok()
            .and_then(Self::rsa)
            .ok_or(SignatureError::BadKey("not an RSA public key in PEM"))
    }

    /// The key of a PEM X.509 certificate. The certificate's validity period is deliberately
    /// not checked: MNS still signs with a certificate that expired long ago, and trust comes
    /// from where the certificate was fetched, not from a chain.
    pub fn from_cert_pem(pem: &str) -> Result<PublicKey, SignatureError> {
        let cert = X509::from_pem(pem.trim().as_bytes())
            .map_err(|_| SignatureError::BadKey("not an X.509 certificate in PEM"))?;
        cert.public_key()
            .ok()
            .and_then(Self::rsa)
            .ok_or(SignatureError::BadKey(
                "certificate does not hold an RSA public key",
            ))
    }

    fn rsa(key: PKey<Public>) -> Option<PublicKey> {
        let exponent_bits = key.rsa().ok()?.e().num_bits();
        // An exponent of 1 would make every "signature" its own message.
        let usable = key.id() == Id::RSA
            && key.bits() <= MAX_BITS
            && (2..=MAX_EXPONENT_BITS).contains(&exponent_bits);
        usable.then_some(PublicKey(key))
    }

    /// Checks an RSA PKCS#1 v1.5 `signature` over the `digest` of `signed`.
    pub fn verify(
        &self,
        digest: MessageDigest,
        signed: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let mut verifier = Verifier::new(digest, &self.0).map_err(|_| SignatureError::Mismatch)?;
        match verifier.verify_oneshot(signature, signed) {
            Ok(true) => Ok(()),
            _ => Err(SignatureError::Mismatch),
        }
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        self.0.public_eq(&other.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(RSA, {} bits)", self.0.bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;

    fn pem_of(key: &PKey<openssl::pkey::Private>) -> String {
        String::from_utf8(key.public_key_to_pem().unwrap()).unwrap()
    }

    #[test]
    fn only_rsa_keys_within_the_bounds_are_taken() {
        let largest = PKey::from_rsa(Rsa::generate(MAX_BITS).unwrap()).unwrap();
        assert!(PublicKey::from_pem(&pem_of(&largest)).is_ok());
        let larger = PKey::from_rsa(Rsa::generate(MAX_BITS + 64).unwrap()).unwrap();
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let usual = Rsa::generate(1024).unwrap();
        let with_exponent = |e: BigNum| {
            let n = usual.n().to_owned().unwrap();
            let pem = Rsa::from_public_components(n, e)
                .unwrap()
                .public_key_to_pem()
                .unwrap();
            String::from_utf8(pem).unwrap()
        };
        let near_modulus = usual.n() - &BigNum::from_u32(2).unwrap();
        for refused in [pem_of(&larger), pem_of(&ec)].into_iter().chain([
            with_exponent(near_modulus),
            with_exponent(BigNum::from_u32(1).unwrap()),
        ]) {
            assert!(matches!(
                PublicKey::from_pem(&refused),
                Err(SignatureError::BadKey(_))
            ));
        }
        assert!(PublicKey::from_pem(&with_exponent(BigNum::from_u32(65537).unwrap())).is_ok());
    }
}
