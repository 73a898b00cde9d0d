//! MD5 carried forward from chunk to chunk. Each invocation is a separate process, so the hash state
//! (the 16-byte chaining value, the block count and the unprocessed tail of < 64 bytes) is persisted
//! with the upload after every chunk; completing then compares digests without re-reading the file.

use md5::digest::common::hazmat::{SerializableState, SerializedState};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// The serialized MD5 state, stored with the upload session (hex in JSON, a few dozen bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumableMd5(#[serde(with = "hex_bytes")] Vec<u8>);

impl Default for ResumableMd5 {
    fn default() -> Self {
        Self::from_hasher(&Md5::new())
    }
}

impl ResumableMd5 {
    fn from_hasher(h: &Md5) -> Self {
        ResumableMd5(h.serialize().as_slice().to_vec())
    }

    fn hasher(&self) -> anyhow::Result<Md5> {
        let state = SerializedState::<Md5>::try_from(self.0.as_slice()).map_err(|_| {
            anyhow::anyhow!(
                "stored MD5 state has {} bytes, not a valid state",
                self.0.len()
            )
        })?;
        Md5::deserialize(&state)
            .map_err(|_| anyhow::anyhow!("stored MD5 state does not deserialize"))
    }

    /// Feeds the next bytes of the file, in order.
    pub fn update(&mut self, data: &[u8]) -> anyhow::Result<()> {
        let mut h = self.hasher()?;
        h.update(data);
        *self = Self::from_hasher(&h);
        Ok(())
    }

    /// The state after feeding `data` (consumes this one; clone to keep it).
    pub fn advanced(mut self, data: &[u8]) -> anyhow::Result<Self> {
        self.update(data)?;
        Ok(self)
    }

    /// The lowercase hex digest of everything fed so far; the state itself is left as it is.
    pub fn hex_digest(&self) -> anyhow::Result<String> {
        Ok(hex::encode(self.hasher()?.finalize()))
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng};

    fn one_shot(data: &[u8]) -> String {
        hex::encode(Md5::digest(data))
    }

    #[test]
    fn empty_input_has_the_known_digest() {
        assert_eq!(
            ResumableMd5::default().hex_digest().unwrap(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn state_round_trips_through_json_and_matches_one_shot_for_random_splits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..200 {
            let len = rng.random_range(0..5000);
            let mut data = vec![0u8; len];
            rng.fill_bytes(&mut data);
            let mut state = ResumableMd5::default();
            let mut at = 0;
            while at < len {
                let step = rng.random_range(1..=(len - at).min(300));
                state.update(&data[at..at + step]).unwrap();
                // Every chunk boundary is a process boundary: persist and reload the state.
                state = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
                at += step;
            }
            assert_eq!(
                state.hex_digest().unwrap(),
                one_shot(&data),
                "round {round}, len {len}"
            );
        }
    }

    #[test]
    fn persisted_state_is_small() {
        let mut s = ResumableMd5::default();
        s.update(&[1u8; 1000]).unwrap();
        assert!(s.0.len() < 128, "{}", s.0.len());
    }

    #[test]
    fn corrupt_state_is_an_error_not_a_panic() {
        let s = ResumableMd5(vec![1, 2, 3]);
        assert!(s.hex_digest().is_err());
    }
}
