//! Mutators. Random bytes rarely get past a JSON or WGSL parser, so most inputs start from a
//! valid document (the corpus) and change a few things a careless or hostile sender would: a field
//! of the wrong type, a number at or beyond a limit, a missing or unknown key, a value moved from
//! elsewhere in the document, deep nesting, long or odd unicode strings, then sometimes byte noise
//! on the encoded text.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::{Map, Number, Value};

/// Numbers at the edges of the integer types and of serde's float handling.
pub fn interesting_number(rng: &mut StdRng) -> Value {
    let n: Value = match rng.gen_range(0..24) {
        0 => 0.into(),
        1 => 1.into(),
        2 => (-1).into(),
        3 => 255.into(),
        4 => 256.into(),
        5 => u16::MAX.into(),
        6 => (u32::MAX as u64 + 1).into(),
        7 => u32::MAX.into(),
        8 => u64::MAX.into(),
        9 => i64::MIN.into(),
        10 => (1u64 << 53).into(),
        11 => Number::from_f64(1e39).unwrap().into(),
        12 => Number::from_f64(-1e39).unwrap().into(),
        13 => Number::from_f64(1.8446744073709552e19).unwrap().into(),
        14 => Number::from_f64(0.5).unwrap().into(),
        15 => Number::from_f64(-0.0).unwrap().into(),
        16 => Number::from_f64(1e-45).unwrap().into(),
        17 => Number::from_f64(f64::MAX).unwrap().into(),
        18 => Number::from_f64(f64::MIN_POSITIVE).unwrap().into(),
        19 => Number::from_f64(3.4028235e38).unwrap().into(),
        20 => rng.r#gen::<u64>().into(),
        21 => rng.r#gen::<i64>().into(),
        22 => rng.gen_range(0u64..300).into(),
        _ => Number::from_f64(rng.gen_range(-1e6..1e6)).unwrap().into(),
    };
    n
}

/// Strings that stress decoders: empty, long, control characters, bidi overrides, emoji,
/// hex of the wrong length or case.
pub fn interesting_string(rng: &mut StdRng) -> String {
    match rng.gen_range(0..12) {
        0 => String::new(),
        1 => "a".repeat(rng.gen_range(1..20_000)),
        2 => "\u{0}\u{1}\u{1f}\u{7f}".into(),
        3 => "\u{202e}evil\u{200b}\u{feff}".into(),
        4 => "😀é\u{fffd}\u{10ffff}".repeat(rng.gen_range(1..200)),
        5 => "0".repeat(rng.gen_range(0..130)),
        6 => "AB".repeat(32),
        7 => "zz".repeat(32),
        8 => "ab".repeat(rng.gen_range(0..70)),
        9 => "../../etc/passwd".into(),
        10 => "%00%ff%2e%2e".into(),
        _ => (0..rng.gen_range(0..40)).map(|_| char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('?')).collect(),
    }
}

/// Random bytes, biased toward JSON's punctuation.
pub fn random_bytes(rng: &mut StdRng, max_len: usize) -> Vec<u8> {
    const JSONISH: &[u8] = b"{}[]\":,0123456789-+.eE \\nulltruefalse";
    let len = rng.gen_range(0..=max_len);
    (0..len).map(|_| if rng.gen_bool(0.5) { *JSONISH.choose(rng).unwrap() } else { rng.r#gen() }).collect()
}

/// One byte-level change: flip, overwrite, insert, delete, duplicate, truncate, or splice in a
/// token (from `tokens`, or a JSON/UTF-8 troublemaker).
pub fn mutate_bytes(rng: &mut StdRng, data: &mut Vec<u8>, tokens: &[Vec<u8>]) {
    const TROUBLE: &[&[u8]] = &[
        b"\xff",
        b"\xc3",
        b"\xed\xa0\x80",
        b"\\ud800",
        b"\\u0000",
        b"\"",
        b"\\",
        b"null",
        b"-",
        b"1e400",
        b"18446744073709551616",
        b"-9223372036854775809",
        b"NaN",
        b"Infinity",
        b",",
        b"}",
        b"]",
        b"{",
        b"[",
        b"\x00",
    ];
    let len = data.len();
    let at = if len == 0 { 0 } else { rng.gen_range(0..len) };
    match rng.gen_range(0..8) {
        0 if len > 0 => data[at] ^= 1 << rng.gen_range(0..8),
        1 if len > 0 => data[at] = rng.r#gen(),
        2 => data.insert(at, rng.r#gen()),
        3 if len > 0 => {
            let end = (at + rng.gen_range(1..=16)).min(len);
            data.drain(at..end);
        }
        4 if len > 0 => {
            let end = (at + rng.gen_range(1..=64)).min(len);
            let copy = data[at..end].to_vec();
            let to = rng.gen_range(0..=len);
            data.splice(to..to, copy);
        }
        5 => data.truncate(at),
        6 if !tokens.is_empty() => {
            let token = tokens.choose(rng).unwrap().clone();
            data.splice(at..at, token);
        }
        _ => {
            let token = TROUBLE.choose(rng).unwrap();
            data.splice(at..at, token.iter().copied());
        }
    }
}

/// Documents stop growing at this many nodes, so repeated copies cannot snowball.
const MAX_NODES: usize = 20_000;

/// Documents stop being mutated past this depth (see [`JsonMutator::document`]).
const MAX_DEPTH: usize = 400;

fn depth(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

fn nth_mut<'a>(v: &'a mut Value, k: &mut usize) -> Option<&'a mut Value> {
    if *k == 0 {
        return Some(v);
    }
    *k -= 1;
    match v {
        Value::Array(a) => a.iter_mut().find_map(|x| nth_mut(x, k)),
        Value::Object(o) => o.values_mut().find_map(|x| nth_mut(x, k)),
        _ => None,
    }
}

fn nth(v: &Value, k: &mut usize) -> Option<Value> {
    if *k == 0 {
        return Some(v.clone());
    }
    *k -= 1;
    match v {
        Value::Array(a) => a.iter().find_map(|x| nth(x, k)),
        Value::Object(o) => o.values().find_map(|x| nth(x, k)),
        _ => None,
    }
}

fn harvest(v: &Value, keys: &mut Vec<String>, strings: &mut Vec<String>) {
    match v {
        Value::String(s) => strings.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| harvest(x, keys, strings)),
        Value::Object(o) => {
            for (k, x) in o {
                keys.push(k.clone());
                harvest(x, keys, strings);
            }
        }
        _ => {}
    }
}

/// Structure-aware mutation of JSON documents drawn from a corpus of valid ones. Keys and
/// strings seen anywhere in the corpus (variant tags, enum names, field names) are the
/// dictionary, so a mutation can move a document to another variant or rename a field to a
/// sibling's name.
#[derive(Debug, Clone)]
pub struct JsonMutator {
    corpus: Vec<Value>,
    keys: Vec<String>,
    strings: Vec<String>,
    numbers: Vec<u64>,
    tokens: Vec<Vec<u8>>,
}

impl JsonMutator {
    pub fn new(corpus: Vec<Value>) -> Self {
        assert!(!corpus.is_empty(), "a mutator needs a corpus");
        let (mut keys, mut strings) = (Vec::new(), Vec::new());
        corpus.iter().for_each(|v| harvest(v, &mut keys, &mut strings));
        keys.sort();
        keys.dedup();
        strings.sort();
        strings.dedup();
        strings.retain(|s| s.len() <= 256);
        let tokens = keys.iter().map(|k| format!("\"{k}\":").into_bytes()).collect();
        Self { corpus, keys, strings, numbers: Vec::new(), tokens }
    }

    /// Numbers worth trying as they are and off by one: the limits a decoder or validator enforces.
    pub fn with_limits(mut self, limits: &[u64]) -> Self {
        for &n in limits {
            self.numbers.extend([n.saturating_sub(1), n, n.saturating_add(1)]);
        }
        self
    }

    pub fn corpus(&self) -> &[Value] {
        &self.corpus
    }

    fn number(&self, rng: &mut StdRng) -> Value {
        if !self.numbers.is_empty() && rng.gen_bool(0.5) {
            (*self.numbers.choose(rng).unwrap()).into()
        } else {
            interesting_number(rng)
        }
    }

    fn scalar(&self, rng: &mut StdRng) -> Value {
        match rng.gen_range(0..6) {
            0 | 1 => self.number(rng),
            2 => Value::String(interesting_string(rng)),
            3 if !self.strings.is_empty() => Value::String(self.strings.choose(rng).unwrap().clone()),
            4 => Value::Bool(rng.r#gen()),
            _ => Value::Null,
        }
    }

    /// One structural change to a random node of `doc`.
    pub fn mutate_value(&self, rng: &mut StdRng, doc: &mut Value) {
        let total = count_nodes(doc);
        let donor = nth(doc, &mut rng.gen_range(0..total)).unwrap();
        let node = nth_mut(doc, &mut rng.gen_range(0..total)).unwrap();
        match rng.gen_range(0..12) {
            // Wrong type or an edge value.
            0 | 1 => *node = self.scalar(rng),
            // Another part of the same document (swapped field values, nested copies).
            2 if total + count_nodes(&donor) <= MAX_NODES => *node = donor,
            3 => {
                let inner = std::mem::take(node);
                *node = match rng.gen_range(0..3) {
                    0 => Value::Array(vec![inner]),
                    1 => Value::Object(Map::from_iter([(self.key(rng), inner)])),
                    _ => Value::Array(vec![]),
                };
            }
            // Deep nesting, around serde_json's recursion limit (deeper still in `bytes`).
            4 => {
                let depth = *[2usize, 50, 126, 127, 128, 129, 300].choose(rng).unwrap();
                let mut inner = std::mem::take(node);
                for _ in 0..depth {
                    inner = if rng.gen_bool(0.5) {
                        Value::Array(vec![inner])
                    } else {
                        Value::Object(Map::from_iter([(self.key(rng), inner)]))
                    };
                }
                *node = inner;
            }
            _ => match node {
                Value::Object(o) if !o.is_empty() => {
                    let key = o.keys().nth(rng.gen_range(0..o.len())).unwrap().clone();
                    match rng.gen_range(0..4) {
                        0 => {
                            o.remove(&key);
                        }
                        1 => {
                            let value = o.remove(&key).unwrap();
                            o.insert(self.key(rng), value);
                        }
                        2 => {
                            o.insert(self.key(rng), self.scalar(rng));
                        }
                        _ => {
                            let value = self.scalar(rng);
                            o.insert(key, value);
                        }
                    }
                }
                Value::Array(a) if !a.is_empty() => {
                    let i = rng.gen_range(0..a.len());
                    match rng.gen_range(0..5) {
                        0 => {
                            a.remove(i);
                        }
                        1 => a.truncate(i),
                        2 => {
                            // Past a count limit (e.g. 65 params, 7 inputs, 4097 tasks).
                            let to = *[3usize, 7, 8, 65, 130, 4097].choose(rng).unwrap();
                            let fill = a[i].clone();
                            if total + to * count_nodes(&fill) <= MAX_NODES {
                                a.resize(to.max(a.len()), fill);
                            }
                        }
                        3 => a.push(self.scalar(rng)),
                        _ => a[i] = self.scalar(rng),
                    }
                }
                Value::Number(_) => *node = self.number(rng),
                Value::String(s) => match rng.gen_range(0..4) {
                    0 => s.push_str(&interesting_string(rng)),
                    1 => {
                        let cut = (0..=rng.gen_range(0..=s.len())).rev().find(|&i| s.is_char_boundary(i)).unwrap();
                        s.truncate(cut);
                    }
                    2 => *s = s.to_uppercase(),
                    _ => *node = Value::String(self.strings.choose(rng).cloned().unwrap_or_default()),
                },
                _ => *node = self.scalar(rng),
            },
        }
    }

    fn key(&self, rng: &mut StdRng) -> String {
        if rng.gen_bool(0.8) { self.keys.choose(rng).cloned().unwrap_or_default() } else { interesting_string(rng) }
    }

    /// A corpus document (and its index) with 0 to 4 structural changes.
    pub fn document(&self, rng: &mut StdRng) -> (usize, Value) {
        let index = rng.gen_range(0..self.corpus.len());
        let mut doc = self.corpus[index].clone();
        for _ in 0..rng.gen_range(0..=4) {
            // Deep documents stop here: the mutator's own recursion must not overflow the stack.
            if depth(&doc) > MAX_DEPTH {
                break;
            }
            self.mutate_value(rng, &mut doc);
        }
        (index, doc)
    }

    /// Encoded input for a decoder: mostly a mutated document, sometimes with byte noise on top,
    /// now and then plain random bytes. Returns the corpus index it started from.
    pub fn bytes(&self, rng: &mut StdRng) -> (usize, Vec<u8>) {
        if rng.gen_ratio(1, 20) {
            return (0, random_bytes(rng, 256));
        }
        let (index, doc) = self.document(rng);
        let mut bytes = if rng.gen_bool(0.2) {
            serde_json::to_vec_pretty(&doc).unwrap()
        } else {
            serde_json::to_vec(&doc).unwrap()
        };
        if rng.gen_bool(0.3) {
            for _ in 0..rng.gen_range(1..=4) {
                mutate_bytes(rng, &mut bytes, &self.tokens);
            }
        }
        if rng.gen_ratio(1, 50) {
            // Nesting far past any recursion limit, which only a parser's depth check stops.
            let open: &[u8] = if rng.r#gen() { b"[" } else { b"{\"a\":" };
            let at = rng.gen_range(0..=bytes.len());
            bytes.splice(at..at, open.repeat(rng.gen_range(1_000..100_000)));
        }
        (index, bytes)
    }
}

/// Splits source text into identifier/number words, whitespace runs and single other characters.
pub fn tokenize(source: &str) -> Vec<&str> {
    let kind = |c: char| {
        if c.is_alphanumeric() || c == '_' || c == '.' {
            0
        } else if c.is_whitespace() {
            1
        } else {
            2
        }
    };
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut previous = None;
    for (i, c) in source.char_indices() {
        let k = kind(c);
        if i > start && (k == 2 || previous != Some(k)) {
            tokens.push(&source[start..i]);
            start = i;
        }
        previous = Some(k);
    }
    if start < source.len() {
        tokens.push(&source[start..]);
    }
    tokens
}

/// Token-level mutation of source code (WGSL): valid kernels with tokens dropped, repeated,
/// swapped or replaced from the corpus's own vocabulary, numbers at type edges, deep nesting, and
/// pure token soup.
#[derive(Debug, Clone)]
pub struct TokenMutator {
    corpus: Vec<String>,
    vocabulary: Vec<String>,
    max_nesting: usize,
}

impl TokenMutator {
    pub fn new(corpus: Vec<String>) -> Self {
        assert!(!corpus.is_empty(), "a mutator needs a corpus");
        let mut vocabulary: Vec<String> = corpus.iter().flat_map(|s| tokenize(s)).map(str::to_string).collect();
        vocabulary.sort();
        vocabulary.dedup();
        Self { corpus, vocabulary, max_nesting: 1000 }
    }

    /// The deepest nesting of brackets or prefix operators to insert (1,000 unless set).
    pub fn with_max_nesting(mut self, depth: usize) -> Self {
        self.max_nesting = depth;
        self
    }

    fn word(&self, rng: &mut StdRng) -> String {
        const EDGES: &[&str] = &[
            "4294967295u",
            "4294967296u",
            "2147483648i",
            "-2147483648i",
            "0xffffffffffffffff",
            "99999999999999999999",
            "1e39f",
            "1e-46",
            "0x1p128f",
            "65535u",
            "65536",
            "257",
            "1h",
            "0.",
            "'",
            "\u{0}",
            "é",
            "/*",
            "*/",
            "//",
        ];
        if rng.gen_ratio(1, 5) {
            EDGES.choose(rng).unwrap().to_string()
        } else {
            self.vocabulary.choose(rng).unwrap().clone()
        }
    }

    /// A source of at most `max_len` bytes.
    pub fn source(&self, rng: &mut StdRng, max_len: usize) -> String {
        let mut out: Vec<String> = if rng.gen_ratio(1, 10) {
            (0..rng.gen_range(1..400)).map(|_| self.word(rng)).collect()
        } else {
            tokenize(self.corpus.choose(rng).unwrap()).into_iter().map(str::to_string).collect()
        };
        for _ in 0..rng.gen_range(1..=6) {
            let len = out.len();
            if len == 0 {
                out.push(self.word(rng));
                continue;
            }
            let i = rng.gen_range(0..len);
            match rng.gen_range(0..8) {
                0 => {
                    let end = (i + rng.gen_range(1..=8)).min(len);
                    out.drain(i..end);
                }
                1 => {
                    let end = (i + rng.gen_range(1..=32)).min(len);
                    let copy = out[i..end].to_vec();
                    let to = rng.gen_range(0..=len);
                    out.splice(to..to, copy);
                }
                2 => out.swap(i, rng.gen_range(0..len)),
                3 => out[i] = self.word(rng),
                4 => out.insert(i, self.word(rng)),
                5 => {
                    let (open, close) =
                        *[("(", ")"), ("{", "}"), ("[", "]"), ("array<", ">"), ("- ", ""), ("!", ""), ("~", "")]
                            .choose(rng)
                            .unwrap();
                    let depth = *[10usize, 100, 1000, self.max_nesting].choose(rng).unwrap();
                    let balanced = rng.gen_bool(0.5);
                    out.insert(i, open.repeat(depth));
                    if balanced {
                        out.insert((i + 2).min(out.len()), close.repeat(depth));
                    }
                }
                6 if out[i].chars().next().is_some_and(|c| c.is_ascii_digit()) => out[i] = self.word(rng),
                _ => {
                    let mut bytes = out[i].clone().into_bytes();
                    mutate_bytes(rng, &mut bytes, &[]);
                    out[i] = String::from_utf8_lossy(&bytes).into_owned();
                }
            }
        }
        let mut source = out.concat();
        if source.len() > max_len {
            let cut = (0..=max_len).rev().find(|&i| source.is_char_boundary(i)).unwrap();
            source.truncate(cut);
        }
        source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tokenize_keeps_every_byte() {
        let src = "@compute @workgroup_size(64)\nfn main() { let x = 1.5e3f; }";
        let tokens = tokenize(src);
        assert_eq!(tokens.concat(), src);
        assert!(tokens.contains(&"workgroup_size"));
        assert!(tokens.contains(&"1.5e3f"));
    }

    #[test]
    fn json_mutations_stay_encodable_and_vary() {
        let corpus = vec![serde_json::json!({"type": "hello", "n": 1, "list": [1, 2, "x"]})];
        let mutator = JsonMutator::new(corpus).with_limits(&[64]);
        let mut rng = StdRng::seed_from_u64(7);
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..500 {
            distinct.insert(mutator.bytes(&mut rng).1);
        }
        assert!(distinct.len() > 300, "{}", distinct.len());
    }

    #[test]
    fn token_sources_respect_the_size_bound() {
        let mutator = TokenMutator::new(vec!["fn main() { return; }".into()]);
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..500 {
            assert!(mutator.source(&mut rng, 1000).len() <= 1000);
        }
    }
}
