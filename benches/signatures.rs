//! `cargo bench --bench signatures`: the cost of checking one OSS callback signature (RSA
//! PKCS#1 v1.5 over MD5 of the callback's path, query and body), as mediagate checks it
//! (OpenSSL), next to the pure-Rust `rsa` crate, side by side in one run, for keys of OSS's
//! published size (512 bits), of the notification bench's (1,024) and of 2,048 bits.
//! Environment: `BENCH_CHECKS` per measurement (2000), `BENCH_ROUNDS` (3), the two sides
//! taking turns to go first.

#[allow(dead_code)]
mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::env_or;
use md5::{Digest, Md5};
use mediagate::notifications::oss::{callback_string_to_sign, verify_callback};
use mediagate::notifications::public_key::PublicKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};

fn main() {
    let checks = env_or("BENCH_CHECKS", 2000).max(1) as u32;
    let rounds = env_or("BENCH_ROUNDS", 3).max(1);
    println!("# mediagate signature check benchmark\n");
    println!(
        "- one OSS callback (form body of a new object), {checks} checks per measurement, {rounds} rounds alternated\n"
    );
    println!("| key | OpenSSL (mediagate) µs | rsa crate µs | rsa / OpenSSL |");
    println!("|---|---:|---:|---:|");
    let signed = callback_string_to_sign(
        "/v1/notifications/oss-callback",
        None,
        b"bucket=media-input&object=uploads%2Fbench%2F7%2F42.mp4&etag=D41D8CD98F00B204E9800998ECF8427E&size=4096&mimeType=video%2Fmp4&x%3Aupload_id=0193f4d2-7c1e-7a10-9b1e-3f0c2d4e5a6b",
    );
    for bits in [512, 1024, 2048] {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).expect("RSA keygen");
        let public = RsaPublicKey::from(&private);
        let pem = public.to_public_key_pem(LineEnding::LF).unwrap();
        let ours = PublicKey::from_pem(&pem).unwrap();
        let signature = private
            .sign(Pkcs1v15Sign::new::<Md5>(), &Md5::digest(&signed))
            .unwrap();
        let authorization = B64.encode(&signature);
        let (mut openssl, mut pure) = (Duration::ZERO, Duration::ZERO);
        let with_openssl = || {
            time(checks, || {
                verify_callback(&ours, &authorization, &signed).expect("OpenSSL check")
            })
        };
        let with_rsa_crate = || {
            time(checks, || {
                let signature = B64.decode(&authorization).unwrap();
                public
                    .verify(
                        Pkcs1v15Sign::new::<Md5>(),
                        &Md5::digest(&signed),
                        &signature,
                    )
                    .expect("rsa crate check")
            })
        };
        for round in 0..rounds {
            if round % 2 == 0 {
                openssl += with_openssl();
                pure += with_rsa_crate();
            } else {
                pure += with_rsa_crate();
                openssl += with_openssl();
            }
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(checks) / rounds as f64;
        println!(
            "| RSA {bits} | {:.1} | {:.1} | {:.1} |",
            per(openssl),
            per(pure),
            per(pure) / per(openssl)
        );
    }
}

fn time(checks: u32, mut check: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..checks {
        check();
    }
    start.elapsed()
}
