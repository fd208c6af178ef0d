//! Fixtures shared by the DLP integration tests: credential-shaped values built at test time
//! (fake, but valid for their detectors), so no file holds one literally.

// Each test crate uses a subset of these.
#![allow(dead_code)]

use tollgate_dlp::base62::crc32_checksum;

/// An AWS access key id shape (fake).
pub fn aws_access_key() -> String {
    ["AK", "IA", "Z7QW3ERT2YUI4OPL"].concat()
}

/// A GitHub personal access token with a valid CRC32 checksum (fake).
pub fn github_token() -> String {
    let body = "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1";
    let c: String = crc32_checksum(body.as_bytes())
        .map(char::from)
        .into_iter()
        .collect();
    format!("gh{}_{body}{c}", "p")
}
