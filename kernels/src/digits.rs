//! The optical handwritten digits data set (E. Alpaydin and C. Kaynak, UCI Machine Learning
//! Repository, 1998, CC BY 4.0): 1,797 images of 8 x 8 pixels, each 0..=16, labelled 0..=9. The
//! repository carries scikit-learn 1.9.1's copy (`data/digits.csv.gz`, see `data/README.md`).

use flate2::read::GzDecoder;
use std::io::Read;

/// Pixels per image.
pub const FEATURES: usize = 64;
/// Classes.
pub const CLASSES: usize = 10;

const CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

/// Images and their labels, in the file's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digits {
    pub images: Vec<[u8; FEATURES]>,
    pub labels: Vec<u8>,
}

impl Digits {
    /// The whole data set.
    pub fn load() -> Digits {
        let mut csv = String::new();
        GzDecoder::new(CSV_GZ).read_to_string(&mut csv).expect("the carried data set decompresses");
        let mut digits = Digits { images: Vec::new(), labels: Vec::new() };
        for line in csv.lines().filter(|l| !l.trim().is_empty()) {
            let values: Vec<u8> = line.split(',').map(|v| v.trim().parse().expect("a pixel or label")).collect();
            assert_eq!(values.len(), FEATURES + 1, "64 pixels and a label per line");
            digits.images.push(values[..FEATURES].try_into().expect("64 pixels"));
            digits.labels.push(values[FEATURES]);
        }
        digits
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// A training set and a test set: every `k`-th sample (from the first) is for testing.
    pub fn split(&self, k: usize) -> (Digits, Digits) {
        let (mut train, mut test) =
            (Digits { images: vec![], labels: vec![] }, Digits { images: vec![], labels: vec![] });
        for (i, (image, label)) in self.images.iter().zip(&self.labels).enumerate() {
            let set = if i % k.max(2) == 0 { &mut test } else { &mut train };
            set.images.push(*image);
            set.labels.push(*label);
        }
        (train, test)
    }

    /// The samples `range` as Q16 features (a pixel `p` is `p / 16`).
    pub fn features(&self, range: std::ops::Range<usize>) -> Vec<i32> {
        self.images[range].iter().flat_map(|img| img.iter().map(|&p| i32::from(p) << 12)).collect()
    }

    /// The labels `range` as u32 words.
    pub fn label_words(&self, range: std::ops::Range<usize>) -> Vec<u32> {
        self.labels[range].iter().map(|&l| u32::from(l)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_carried_set_is_whole() {
        let d = Digits::load();
        assert_eq!(d.len(), 1797);
        let mut per_class = [0usize; CLASSES];
        for &l in &d.labels {
            per_class[l as usize] += 1;
        }
        assert!(per_class.iter().all(|&n| (170..=190).contains(&n)), "{per_class:?}");
        assert!(d.images.iter().flatten().all(|&p| p <= 16));
        let (train, test) = d.split(5);
        assert_eq!((train.len(), test.len()), (1437, 360));
    }
}
