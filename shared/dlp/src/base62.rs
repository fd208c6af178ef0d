//! Base62 with the alphabet `0-9A-Za-z`, and the CRC32 checksum written in it.
//!
//! The client key contract (`tgk_…`: the last 6 characters are the CRC32/IEEE of everything
//! before them, big-endian base62, left-padded with `0`) and GitHub's token format use the
//! same encoding. This is the workspace's one implementation: the DLP validators use it here,
//! and `tollgate-core` re-exports this module as `tollgate_core::base62` for the key format.

/// The contract's alphabet, in digit order.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Width of a CRC32 in base62: `u32::MAX` needs exactly 6 digits.
pub const CHECKSUM_LEN: usize = 6;

/// True for the 62 characters of [`ALPHABET`].
pub fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// `n` written big-endian in base62, left-padded with `0` to `width` characters.
/// Values wider than `width` keep their extra leading digits (never truncated).
pub fn encode_padded(mut n: u64, width: usize) -> String {
    let mut digits = Vec::with_capacity(width.max(11));
    while n > 0 {
        digits.push(ALPHABET[(n % 62) as usize]);
        n /= 62;
    }
    digits.resize(digits.len().max(width), b'0');
    digits.iter().rev().map(|&d| char::from(d)).collect()
}

/// A `u32` as exactly [`CHECKSUM_LEN`] base62 digits (no allocation; for scanners).
pub fn encode_u32(mut v: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(v % 62) as usize];
        v /= 62;
    }
    out
}

/// The checksum the key contract appends: CRC32 (IEEE, as zlib) of `data`, in base62.
pub fn crc32_checksum(data: &[u8]) -> [u8; CHECKSUM_LEN] {
    encode_u32(crc32fast::hash(data))
}

/// Appends `n` characters drawn uniformly from [`ALPHABET`], taking random bytes from
/// `fill_bytes` (pass `|b| rng.fill_bytes(b)` with a CSPRNG for secrets). Rejection sampling:
/// bytes at or above 248 (= 4 × 62) would make the low symbols likelier, so they are skipped.
pub fn push_random(out: &mut String, n: usize, mut fill_bytes: impl FnMut(&mut [u8])) {
    let mut pushed = 0;
    let mut buf = [0u8; 64];
    while pushed < n {
        fill_bytes(&mut buf);
        for &b in &buf {
            if b < 248 && pushed < n {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
                pushed += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_and_orders_big_endian() {
        assert_eq!(encode_padded(0, 6), "000000");
        assert_eq!(encode_padded(61, 6), "00000z");
        assert_eq!(encode_padded(62, 6), "000010");
        // u32::MAX = 4294967295 needs exactly 6 base62 digits.
        assert_eq!(encode_padded(u64::from(u32::MAX), 6), "4gfFC3");
        assert_eq!(encode_padded(u64::MAX, 6).len(), 11);
    }

    #[test]
    fn fixed_width_form_agrees_with_padded_form() {
        for v in [0, 1, 61, 62, 3843, 3844, 0x8000_0000, u32::MAX] {
            assert_eq!(
                encode_u32(v).as_slice(),
                encode_padded(u64::from(v), CHECKSUM_LEN).as_bytes()
            );
        }
    }

    #[test]
    fn checksum_is_zlib_crc32_in_base62() {
        // zlib.crc32(b"123456789") == 0xCBF43926, the standard check value.
        assert_eq!(
            crc32_checksum(b"123456789"),
            encode_u32(0xCBF4_3926),
            "CRC32/IEEE check value"
        );
    }

    #[test]
    fn random_symbols_skip_biased_bytes() {
        let mut s = String::new();
        // 248..=255 are skipped; 0, 61, 62 map to '0', 'z', '0'.
        let bytes = [255u8, 248, 0, 61, 62];
        push_random(&mut s, 3, |b| {
            for (i, x) in b.iter_mut().enumerate() {
                *x = bytes[i % bytes.len()];
            }
        });
        assert_eq!(s, "0z0");
    }
}
