//! Exact decimal strings to tickwire fixed point, without floating point.
//!
//! Venues that speak JSON (Binance) send prices and quantities as decimal strings such as
//! `"61234.56000000"`. Going through `f64` would round (0.1 has no binary representation);
//! these parsers accumulate the digits into an integer scaled by 10^decimals instead, so
//! every string with at most `decimals` significant fractional digits converts exactly:
//!
//! * [`parse_price`]: 10⁻⁹ units ([`PRICE_SCALE`](tickwire_engine::event::PRICE_SCALE)),
//!   `i64`, an optional leading `-`;
//! * [`parse_size`]: 10⁻⁸ units ([`SIZE_SCALE`](tickwire_engine::event::SIZE_SCALE)), `u64`;
//! * [`parse_fixed`]: any scale, unsigned.
//!
//! Accepted: ASCII digits with at most one `.`, at least one digit overall (`"1."` and
//! `".5"` are accepted). Fractional digits beyond the scale are accepted only when they are
//! zeros (the value is still exact); a non-zero digit there is [`DecimalError::TooPrecise`].
//! No exponent, no `+`, no spaces, no thousands separators.
//!
//! ```
//! use tickwire_feeds::decimal::{parse_price, parse_size, DecimalError};
//!
//! assert_eq!(parse_price(b"61234.56000000"), Ok(61_234_560_000_000));
//! assert_eq!(parse_size(b"0.00012"), Ok(12_000));
//! assert_eq!(parse_size(b"0.000000001"), Err(DecimalError::TooPrecise { decimals: 8 }));
//! assert_eq!(parse_size(b"1e5"), Err(DecimalError::InvalidByte { byte: b'e', index: 1 }));
//! ```

/// Why a decimal string was refused. Small and `Copy`: decoders call this on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecimalError {
    /// No digit at all (`""`, `"."`, `"-"`).
    #[error("empty number")]
    Empty,
    /// A byte that is not a digit (or a second `.`, or a misplaced `-`).
    #[error("invalid byte {byte:#04x} at index {index}")]
    InvalidByte {
        /// The byte.
        byte: u8,
        /// Its index in the string.
        index: usize,
    },
    /// A non-zero digit past the scale: the value is not representable exactly.
    #[error("more than {decimals} significant decimals")]
    TooPrecise {
        /// The scale's number of decimals.
        decimals: u32,
    },
    /// The scaled value does not fit the integer type.
    #[error("out of range")]
    Overflow,
}

/// Decimals of a price: 10⁻⁹ units.
pub const PRICE_DECIMALS: u32 = 9;
/// Decimals of a size: 10⁻⁸ units.
pub const SIZE_DECIMALS: u32 = 8;

/// Powers of ten that fit a `u64`: 10⁰ ..= 10¹⁹.
const POW10: [u64; 20] = {
    let mut table = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// Digits that always fit a `u64` (10¹⁹ − 1 < 2⁶⁴ − 1).
const SAFE_DIGITS: usize = 19;

/// `text` scaled by 10^`decimals`, exactly, as a `u64` (no sign allowed).
#[inline]
pub fn parse_fixed(text: &[u8], decimals: u32) -> Result<u64, DecimalError> {
    let (int, frac) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &text[..0]),
    };
    if int.is_empty() && frac.is_empty() {
        return Err(DecimalError::Empty);
    }
    let scale = decimals as usize;
    // Digits past the scale must be zeros; they are validated here and then ignored.
    let frac = if frac.len() > scale {
        for (offset, &byte) in frac[scale..].iter().enumerate() {
            if byte != b'0' {
                return Err(if byte.is_ascii_digit() {
                    DecimalError::TooPrecise { decimals }
                } else {
                    DecimalError::InvalidByte {
                        byte,
                        index: int.len() + 1 + scale + offset,
                    }
                });
            }
        }
        &frac[..scale]
    } else {
        frac
    };
    let missing = scale - frac.len();
    if int.len() + scale <= SAFE_DIGITS {
        // Fast path: the result has at most 19 digits, so nothing can overflow.
        let mut value = 0u64;
        for (index, &byte) in int.iter().enumerate() {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                return Err(DecimalError::InvalidByte { byte, index });
            }
            value = value * 10 + u64::from(digit);
        }
        for (offset, &byte) in frac.iter().enumerate() {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                let index = int.len() + 1 + offset;
                return Err(DecimalError::InvalidByte { byte, index });
            }
            value = value * 10 + u64::from(digit);
        }
        return Ok(value * POW10[missing]);
    }
    let mut value = 0u64;
    let digits = int.iter().enumerate().chain(
        frac.iter()
            .enumerate()
            .map(|(offset, b)| (int.len() + 1 + offset, b)),
    );
    for (index, &byte) in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return Err(DecimalError::InvalidByte { byte, index });
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or(DecimalError::Overflow)?;
    }
    POW10
        .get(missing)
        .and_then(|scale| value.checked_mul(*scale))
        .ok_or(DecimalError::Overflow)
}

/// A price in 10⁻⁹ units; a leading `-` is allowed (spreads, some instruments).
#[inline]
pub fn parse_price(text: &[u8]) -> Result<i64, DecimalError> {
    match text.split_first() {
        Some((b'-', rest)) => {
            let magnitude = parse_fixed(rest, PRICE_DECIMALS).map_err(shift_index)?;
            // i64::MIN's magnitude is one more than i64::MAX: go through i128 to allow it.
            i64::try_from(-i128::from(magnitude)).map_err(|_| DecimalError::Overflow)
        }
        _ => {
            let value = parse_fixed(text, PRICE_DECIMALS)?;
            i64::try_from(value).map_err(|_| DecimalError::Overflow)
        }
    }
}

/// A size (quantity) in 10⁻⁸ units.
#[inline]
pub fn parse_size(text: &[u8]) -> Result<u64, DecimalError> {
    parse_fixed(text, SIZE_DECIMALS)
}

/// Accounts for the stripped sign in an error's byte index.
fn shift_index(e: DecimalError) -> DecimalError {
    match e {
        DecimalError::InvalidByte { byte, index } => DecimalError::InvalidByte {
            byte,
            index: index + 1,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn binance_strings_convert_exactly() {
        assert_eq!(parse_price(b"61234.56000000"), Ok(61_234_560_000_000));
        assert_eq!(parse_price(b"0.1"), Ok(100_000_000));
        assert_eq!(parse_price(b"61800.20"), Ok(61_800_200_000_000));
        assert_eq!(parse_price(b"-1.5"), Ok(-1_500_000_000));
        assert_eq!(parse_size(b"1.54698000"), Ok(154_698_000));
        assert_eq!(parse_size(b"0.00000001"), Ok(1));
        assert_eq!(parse_size(b"0.000"), Ok(0));
        assert_eq!(parse_size(b"12"), Ok(1_200_000_000));
        assert_eq!(parse_size(b"1."), Ok(100_000_000));
        assert_eq!(parse_size(b".5"), Ok(50_000_000));
        // Zeros past the scale keep the value exact.
        assert_eq!(parse_size(b"0.1234567800"), Ok(12_345_678));
    }

    #[test]
    fn garbage_precision_and_range_are_refused() {
        assert_eq!(parse_size(b""), Err(DecimalError::Empty));
        assert_eq!(parse_size(b"."), Err(DecimalError::Empty));
        assert_eq!(parse_price(b"-"), Err(DecimalError::Empty));
        assert_eq!(
            parse_size(b"1.2.3"),
            Err(DecimalError::InvalidByte {
                byte: b'.',
                index: 3
            })
        );
        assert_eq!(
            parse_size(b"-1"),
            Err(DecimalError::InvalidByte {
                byte: b'-',
                index: 0
            })
        );
        assert_eq!(
            parse_price(b"--1"),
            Err(DecimalError::InvalidByte {
                byte: b'-',
                index: 1
            })
        );
        assert_eq!(
            parse_size(b" 1"),
            Err(DecimalError::InvalidByte {
                byte: b' ',
                index: 0
            })
        );
        assert_eq!(
            parse_size(b"0.123456789"),
            Err(DecimalError::TooPrecise { decimals: 8 })
        );
        assert_eq!(
            parse_price(b"0.0000000001"),
            Err(DecimalError::TooPrecise { decimals: 9 })
        );
        // u64::MAX / 1e8 is about 1.8e11; i64::MAX / 1e9 about 9.2e9.
        assert_eq!(parse_size(b"184467440737.09551615"), Ok(u64::MAX));
        assert_eq!(
            parse_size(b"184467440737.09551616"),
            Err(DecimalError::Overflow)
        );
        assert_eq!(parse_price(b"9223372036.854775807"), Ok(i64::MAX));
        assert_eq!(
            parse_price(b"9223372036.854775808"),
            Err(DecimalError::Overflow)
        );
        assert_eq!(parse_price(b"-9223372036.854775808"), Ok(i64::MIN));
        assert_eq!(
            parse_size(b"99999999999999999999999"),
            Err(DecimalError::Overflow)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_price(&bytes);
            let _ = parse_size(&bytes);
            let _ = parse_fixed(&bytes, 0);
            let _ = parse_fixed(&bytes, 30);
        }

        #[test]
        fn formatted_values_round_trip(int in 0u64..10_000_000_000, frac in 0u64..100_000_000, trailing in 0usize..4) {
            let text = format!("{int}.{frac:08}{}", "0".repeat(trailing));
            prop_assert_eq!(parse_size(text.as_bytes()), Ok(int * 100_000_000 + frac));
            let text = format!("{int}.{frac:08}");
            let price = i64::try_from(int * 1_000_000_000 + frac * 10).map_err(|_| TestCaseError::reject("range"))?;
            prop_assert_eq!(parse_price(text.as_bytes()), Ok(price));
            prop_assert_eq!(parse_price(format!("-{text}").as_bytes()), Ok(-price));
        }
    }
}
