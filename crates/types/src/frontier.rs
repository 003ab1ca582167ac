//! Frontier marks: how far this node has applied each origin's log.
//!
//! The frontier column family maps an [`crate::Origin`] to its mark. A
//! node's own origin maps to its last issued seq, so the next seq and the
//! clock floor survive a restart.
//!
//! Format 1: `format:u8 seq:u64 hlc:u64`.

use crate::wire::{DecodeError, Reader};

/// The current frontier mark format byte.
pub const FRONTIER_FORMAT: u8 = 1;

/// The last applied entry of one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrontierMark {
    /// Every seq up to and including this one has been applied.
    pub seq: u64,
    /// The HLC of that entry.
    pub hlc: u64,
}

impl FrontierMark {
    /// Encodes in the current format.
    pub fn encode(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[0] = FRONTIER_FORMAT;
        out[1..9].copy_from_slice(&self.seq.to_be_bytes());
        out[9..].copy_from_slice(&self.hlc.to_be_bytes());
        out
    }

    /// Decodes any supported format.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes, "frontier mark");
        let format = reader.u8()?;
        if format != FRONTIER_FORMAT {
            return Err(reader.error(format!("unknown frontier format {format}")));
        }
        let mark = FrontierMark { seq: reader.u64()?, hlc: reader.u64()? };
        reader.finish()?;
        Ok(mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_format() {
        let mark = FrontierMark { seq: 7, hlc: 99 };
        assert_eq!(FrontierMark::decode(&mark.encode()).unwrap(), mark);
        let mut bad = mark.encode();
        bad[0] = 2;
        assert!(FrontierMark::decode(&bad).is_err());
        assert!(FrontierMark::decode(&bad[..5]).is_err());
    }
}
