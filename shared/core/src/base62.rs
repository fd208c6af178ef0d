//! Base62 with the alphabet `0-9A-Za-z`, as the client key contract fixes it.

pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

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
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    // Only ASCII bytes from ALPHABET were pushed.
    String::from_utf8(digits).unwrap_or_default()
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
    }
}
