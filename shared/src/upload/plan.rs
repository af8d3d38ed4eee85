//! How a file is cut into S3 multipart parts: every part but the last the same size, at
//! least S3's 5 MiB minimum (we use 8 MiB, what browsers and the SDKs upload comfortably in
//! parallel), at most S3's 10,000 parts, in whole MiB.

use serde::{Deserialize, Serialize};

pub const MIN_PART_BYTES: u64 = 8 * 1024 * 1024;
pub const MAX_PARTS: u64 = 10_000;
/// S3's largest object.
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartPlan {
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
}

impl PartPlan {
    /// `None` for an empty file or one larger than S3 stores.
    pub fn for_size(size: u64, min_part: u64) -> Option<PartPlan> {
        if size == 0 || size > MAX_OBJECT_BYTES {
            return None;
        }
        let min_part = min_part.max(5 * MIB);
        let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        let part_size = needed.max(min_part);
        let part_count = u32::try_from(size.div_ceil(part_size)).ok()?;
        Some(PartPlan {
            size,
            part_size,
            part_count,
        })
    }

    /// The bytes part `n` (1-based) covers: `[start, end)`.
    pub fn range(&self, n: u32) -> Option<(u64, u64)> {
        if n == 0 || n > self.part_count {
            return None;
        }
        let start = u64::from(n - 1) * self.part_size;
        Some((start, (start + self.part_size).min(self.size)))
    }

    pub fn part_len(&self, n: u32) -> Option<u64> {
        self.range(n).map(|(s, e)| e - s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_files_are_one_part_and_huge_ones_stay_within_ten_thousand() {
        let one = PartPlan::for_size(1, MIN_PART_BYTES).unwrap();
        assert_eq!((one.part_count, one.range(1)), (1, Some((0, 1))));
        let exact = PartPlan::for_size(MIN_PART_BYTES, MIN_PART_BYTES).unwrap();
        assert_eq!(exact.part_count, 1);
        let five_gib = PartPlan::for_size(5 << 30, MIN_PART_BYTES).unwrap();
        assert_eq!(
            (five_gib.part_size, five_gib.part_count),
            (MIN_PART_BYTES, 640)
        );
        let max = PartPlan::for_size(MAX_OBJECT_BYTES, MIN_PART_BYTES).unwrap();
        assert!(u64::from(max.part_count) <= MAX_PARTS);
        assert_eq!(PartPlan::for_size(0, MIN_PART_BYTES), None);
        assert_eq!(
            PartPlan::for_size(MAX_OBJECT_BYTES + 1, MIN_PART_BYTES),
            None
        );
        assert_eq!(one.range(2), None);
        assert_eq!(one.range(0), None);
    }

    proptest! {
        #[test]
        fn parts_cover_the_file_exactly(size in 1u64..(64u64 << 30)) {
            let plan = PartPlan::for_size(size, MIN_PART_BYTES).unwrap();
            prop_assert!(u64::from(plan.part_count) <= MAX_PARTS);
            prop_assert!(plan.part_size >= 5 * MIB);
            let mut next = 0;
            for n in 1..=plan.part_count {
                let (s, e) = plan.range(n).unwrap();
                prop_assert_eq!(s, next);
                prop_assert!(e > s);
                if n < plan.part_count { prop_assert_eq!(e - s, plan.part_size); }
                next = e;
            }
            prop_assert_eq!(next, size);
        }
    }
}
