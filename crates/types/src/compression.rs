//! Per-record value compression.
//!
//! A client asks for a codec per record; the codec actually applied is
//! stored in the record's head. Decompression is bounded by a caller-given
//! size, so a crafted input cannot expand into an unbounded allocation.

use std::fmt;
use std::str::FromStr;

use crate::wire::DecodeError;

/// The codec of a stored value. Its name ([`Compression::as_str`]:
/// `none`, `lz4`, `snappy`) is the same on the command line, in JSON and in
/// the OpenAPI document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Compression {
    /// Stored as given.
    #[default]
    None,
    /// LZ4 block format with the uncompressed size prepended (lz4_flex).
    Lz4,
    /// Snappy raw format.
    Snappy,
}

impl Compression {
    /// Every codec.
    pub const ALL: [Compression; 3] = [Compression::None, Compression::Lz4, Compression::Snappy];

    /// The codec's name: `none`, `lz4` or `snappy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Snappy => "snappy",
        }
    }

    /// The two-bit code kept in head flags.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Snappy => 2,
        }
    }

    /// The codec of a two-bit code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Compression::None),
            1 => Some(Compression::Lz4),
            2 => Some(Compression::Snappy),
            _ => None,
        }
    }

    /// Compresses `value`. Returns the codec actually used and the bytes:
    /// when compression would not make the value smaller, it is stored as is.
    pub fn compress(self, value: &[u8]) -> (Compression, Vec<u8>) {
        match self.shrink(value) {
            Some(compressed) => (self, compressed),
            None => (Compression::None, value.to_vec()),
        }
    }

    /// [`Compression::compress`] for an owned value, which is returned
    /// without a copy when it is stored as is.
    pub fn compress_owned(self, value: Vec<u8>) -> (Compression, Vec<u8>) {
        match self.shrink(&value) {
            Some(compressed) => (self, compressed),
            None => (Compression::None, value),
        }
    }

    /// The compressed bytes, if this codec makes `value` smaller.
    fn shrink(self, value: &[u8]) -> Option<Vec<u8>> {
        let compressed = match self {
            Compression::None => return None,
            Compression::Lz4 => lz4_flex::compress_prepend_size(value),
            // Only fails for inputs over ~4 GiB, far beyond Limits.
            Compression::Snappy => snap::raw::Encoder::new().compress_vec(value).ok()?,
        };
        (compressed.len() < value.len()).then_some(compressed)
    }

    /// Decompresses `stored`, refusing output larger than `max_len`.
    pub fn decompress(self, stored: &[u8], max_len: usize) -> Result<Vec<u8>, DecodeError> {
        let error = |reason: String| DecodeError::new("compressed value", reason);
        match self {
            Compression::None => Ok(stored.to_vec()),
            Compression::Lz4 => {
                let declared = stored
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .ok_or_else(|| error("lz4 value shorter than its size prefix".into()))?;
                if declared > max_len {
                    return Err(error(format!("lz4 value declares {declared} bytes, over {max_len}")));
                }
                lz4_flex::decompress_size_prepended(stored).map_err(|e| error(e.to_string()))
            }
            Compression::Snappy => {
                let declared = snap::raw::decompress_len(stored).map_err(|e| error(e.to_string()))?;
                if declared > max_len {
                    return Err(error(format!("snappy value declares {declared} bytes, over {max_len}")));
                }
                snap::raw::Decoder::new().decompress_vec(stored).map_err(|e| error(e.to_string()))
            }
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compression {
    type Err = String;

    /// A codec by its [`Compression::as_str`] name.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|codec| codec.as_str() == name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|codec| codec.as_str()).collect();
            format!("unknown compression `{name}`: expected one of {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(value in proptest::collection::vec(0u8..4, 0..2048), codec in 0u8..3) {
            let codec = Compression::from_code(codec).expect("valid code");
            let (used, stored) = codec.compress(&value);
            prop_assert!(stored.len() <= value.len());
            prop_assert_eq!(used.decompress(&stored, value.len()).expect("decodes"), value);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Compression::Lz4.decompress(&bytes, 1 << 20);
            let _ = Compression::Snappy.decompress(&bytes, 1 << 20);
        }
    }

    #[test]
    fn each_codec_has_one_name() {
        for codec in Compression::ALL {
            assert_eq!(codec.as_str().parse::<Compression>(), Ok(codec));
            assert_eq!(codec.to_string(), codec.as_str());
        }
        assert!("LZ4".parse::<Compression>().unwrap_err().contains("none, lz4, snappy"));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_names_are_the_codec_names() {
        use serde::Deserialize;
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, StrDeserializer};
        for codec in Compression::ALL {
            let name: StrDeserializer<'_, Error> = codec.as_str().into_deserializer();
            assert_eq!(Compression::deserialize(name), Ok(codec));
        }
    }

    #[test]
    fn owned_compression_agrees_with_borrowed() {
        for value in [b"balance=100;".repeat(100), vec![7]] {
            for codec in [Compression::None, Compression::Lz4, Compression::Snappy] {
                assert_eq!(codec.compress_owned(value.clone()), codec.compress(&value));
            }
        }
    }

    #[test]
    fn compressible_values_shrink_and_incompressible_stay_raw() {
        let text = b"balance=100;".repeat(100);
        assert_eq!(Compression::Lz4.compress(&text).0, Compression::Lz4);
        assert_eq!(Compression::Snappy.compress(&text).0, Compression::Snappy);
        assert_eq!(Compression::Lz4.compress(&[7]).0, Compression::None);
    }

    #[test]
    fn decompression_is_bounded() {
        let (_, stored) = Compression::Lz4.compress(&vec![0u8; 100_000]);
        assert!(Compression::Lz4.decompress(&stored, 1000).is_err());
        let (_, stored) = Compression::Snappy.compress(&vec![0u8; 100_000]);
        assert!(Compression::Snappy.decompress(&stored, 1000).is_err());
    }
}
