//! `mandelbrot`: escape-iteration counts over one tile of an image, exact on every device.
//!
//! The plane is sampled in signed Q4.28 fixed point (an `i32` holding `value * 2^28`, so the
//! range is [-8, 8) with steps of about 3.7e-9), never in floats, so every GPU and the CPU give
//! the same counts. Pixel `(px, py)` of the image maps to
//! `c = (center_re + (px - image_width / 2) * step, center_im - (py - image_height / 2) * step)`,
//! all in wrapping 32-bit arithmetic. A point escapes at the first iteration `i` (counting from 0,
//! with `z_0 = 0`) where `|x| > 2`, `|y| > 2` or `x^2 + y^2 > 4`; points that never escape report
//! `max_iter`. The output is one little-endian u32 count per tile pixel, row-major.
//!
//! A job is an image cut into tiles ([`tile_job_tasks`]); [`assemble_image`] stitches the tiles'
//! outputs back into an RGB8 image.

use super::{expect_output_size, expect_words, expect_workgroups, groups, kernel_error, mul_wide, words_to_bytes};
use crate::Result;
use starling_protocol::job::{BuiltinKernel, TaskSpec};

/// The kernel with the shared 64-bit helpers of `wide_math.wgsl` appended (WGSL has no
/// includes; module-scope functions may be declared after use).
pub const SOURCE: &str = concat!(include_str!("mandelbrot.wgsl"), "\n", include_str!("wide_math.wgsl"));
pub const N_INPUTS: usize = 0;
/// Number of param words.
pub const WORDS: usize = 10;
/// Threads per workgroup along x and y.
pub const WORKGROUP_SIZE: u32 = 16;
/// Fractional bits of the fixed-point format.
pub const FRAC_BITS: u32 = 28;
/// 1.0 in Q4.28.
pub const ONE: i32 = 1 << FRAC_BITS;

const KERNEL: BuiltinKernel = BuiltinKernel::Mandelbrot;

/// A rectangle of pixels in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// The params of one tile, in word order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MandelbrotParams {
    pub image_width: u32,
    pub image_height: u32,
    pub tile: Tile,
    pub max_iter: u32,
    /// Plane centre (shown at pixel `(image_width / 2, image_height / 2)`), Q4.28.
    pub center_re: i32,
    pub center_im: i32,
    /// Plane distance between neighbouring pixels, Q4.28.
    pub step: i32,
}

/// `v` in Q4.28, rounded to nearest and saturated to the format's range.
pub fn to_fixed(v: f64) -> i32 {
    let scaled = (v * f64::from(ONE)).round();
    if scaled.is_nan() {
        0
    } else {
        // `as` saturates out-of-range floats.
        scaled as i32
    }
}

/// The value of a Q4.28 number.
pub fn from_fixed(v: i32) -> f64 {
    f64::from(v) / f64::from(ONE)
}

/// `floor(a * b / 2^28)` wrapped to 32 bits: the fixed-point product every device computes.
pub fn fixed_mul(a: i32, b: i32) -> i32 {
    ((i64::from(a) * i64::from(b)) >> FRAC_BITS) as i32
}

/// The same product built as the WGSL builds it (16-bit limbs, u32 only), returned as raw bits.
/// Tests hold it against [`fixed_mul`].
pub fn fixed_mul_limbs(a: i32, b: i32) -> u32 {
    let (ua, ub) = (a as u32, b as u32);
    let (lo, mut hi) = mul_wide(ua, ub);
    if a < 0 {
        hi = hi.wrapping_sub(ub);
    }
    if b < 0 {
        hi = hi.wrapping_sub(ua);
    }
    (lo >> FRAC_BITS) | (hi << (32 - FRAC_BITS))
}

/// Iterations before `z <- z^2 + c` escapes, or `max_iter`; `c` in Q4.28. Mirrors the WGSL
/// `escape_count` operation for operation.
pub fn escape_count(c_re: i32, c_im: i32, max_iter: u32) -> u32 {
    const TWO: i32 = 2 << FRAC_BITS;
    const FOUR: u32 = 4 << FRAC_BITS;
    let (mut x, mut y) = (0i32, 0i32);
    for i in 0..max_iter {
        if !(-TWO..=TWO).contains(&x) || !(-TWO..=TWO).contains(&y) {
            return i;
        }
        let x2 = fixed_mul(x, x) as u32;
        let y2 = fixed_mul(y, y) as u32;
        if x2 + y2 > FOUR {
            return i;
        }
        let xy = fixed_mul(x, y) as u32;
        x = x2.wrapping_sub(y2).wrapping_add(c_re as u32) as i32;
        y = (xy << 1).wrapping_add(c_im as u32) as i32;
    }
    max_iter
}

impl MandelbrotParams {
    /// Params for one tile of a `image_width` x `image_height` image centred on `center` that
    /// spans `scale` plane units across its width.
    pub fn for_tile(
        image_width: u32,
        image_height: u32,
        tile: Tile,
        max_iter: u32,
        center: (f64, f64),
        scale: f64,
    ) -> Self {
        MandelbrotParams {
            image_width,
            image_height,
            tile,
            max_iter,
            center_re: to_fixed(center.0),
            center_im: to_fixed(center.1),
            step: to_fixed(scale / f64::from(image_width.max(1))),
        }
    }

    pub fn to_words(&self) -> Vec<u32> {
        vec![
            self.image_width,
            self.image_height,
            self.tile.x,
            self.tile.y,
            self.tile.width,
            self.tile.height,
            self.max_iter,
            self.center_re as u32,
            self.center_im as u32,
            self.step as u32,
        ]
    }

    /// Decodes and checks params: the tile must be non-empty, inside the image, and its output
    /// must fit in a u32 byte count.
    pub fn from_words(words: &[u32]) -> Result<Self> {
        expect_words(KERNEL, words, WORDS)?;
        let params = MandelbrotParams {
            image_width: words[0],
            image_height: words[1],
            tile: Tile { x: words[2], y: words[3], width: words[4], height: words[5] },
            max_iter: words[6],
            center_re: words[7] as i32,
            center_im: words[8] as i32,
            step: words[9] as i32,
        };
        let t = params.tile;
        if t.width == 0 || t.height == 0 {
            return Err(kernel_error("mandelbrot tile must be at least 1x1"));
        }
        let right = u64::from(t.x) + u64::from(t.width);
        let bottom = u64::from(t.y) + u64::from(t.height);
        if right > u64::from(params.image_width) || bottom > u64::from(params.image_height) {
            return Err(kernel_error("mandelbrot tile reaches outside the image"));
        }
        if u64::from(t.width) * u64::from(t.height) * 4 > u64::from(u32::MAX) {
            return Err(kernel_error("mandelbrot tile is too large"));
        }
        Ok(params)
    }

    /// One 16x16 workgroup per 16x16 block of the tile.
    pub fn workgroups(&self) -> [u32; 3] {
        [groups(self.tile.width, WORKGROUP_SIZE), groups(self.tile.height, WORKGROUP_SIZE), 1]
    }

    /// Bytes of output: one u32 per tile pixel.
    pub fn output_size(&self) -> u32 {
        self.tile.width * self.tile.height * 4
    }

    pub(crate) fn check(&self, workgroups: [u32; 3], output_size: u32) -> Result<()> {
        expect_workgroups(KERNEL, workgroups, self.workgroups())?;
        expect_output_size(KERNEL, output_size, u64::from(self.output_size()))
    }

    /// The plane point of image pixel `(px, py)`, in Q4.28.
    pub fn pixel_point(&self, px: u32, py: u32) -> (i32, i32) {
        let step = self.step as u32;
        let re = (self.center_re as u32).wrapping_add(px.wrapping_sub(self.image_width / 2).wrapping_mul(step));
        let im = (self.center_im as u32).wrapping_sub(py.wrapping_sub(self.image_height / 2).wrapping_mul(step));
        (re as i32, im as i32)
    }

    /// The CPU reference: the tile's counts as little-endian bytes.
    pub fn cpu(&self) -> Vec<u8> {
        let t = self.tile;
        let mut counts = Vec::with_capacity((t.width * t.height) as usize);
        for py in t.y..t.y + t.height {
            for px in t.x..t.x + t.width {
                let (re, im) = self.pixel_point(px, py);
                counts.push(escape_count(re, im, self.max_iter));
            }
        }
        words_to_bytes(&counts)
    }
}

/// Cuts an image into `tile` x `tile` tiles (smaller at the right and bottom edges), row by row.
/// Empty when any size is 0.
pub fn tiles(image_width: u32, image_height: u32, tile: u32) -> Vec<Tile> {
    if image_width == 0 || image_height == 0 || tile == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for y in (0..image_height).step_by(tile as usize) {
        for x in (0..image_width).step_by(tile as usize) {
            out.push(Tile { x, y, width: tile.min(image_width - x), height: tile.min(image_height - y) });
        }
    }
    out
}

/// One task per tile of an `image_width` x `image_height` image centred on `center` (plane
/// coordinates) and spanning `scale` plane units across its width, `max_iter` iterations at most.
/// Tasks come in [`tiles`] order. Empty when any size is 0.
pub fn tile_job_tasks(
    image_width: u32,
    image_height: u32,
    tile: u32,
    max_iter: u32,
    center: (f64, f64),
    scale: f64,
) -> Vec<TaskSpec> {
    tiles(image_width, image_height, tile)
        .into_iter()
        .map(|t| {
            let params = MandelbrotParams::for_tile(image_width, image_height, t, max_iter, center, scale);
            TaskSpec {
                params: params.to_words(),
                inputs: Vec::new(),
                workgroups: params.workgroups(),
                output_size: params.output_size(),
                kernel: 0,
            }
        })
        .collect()
}

/// Stitches tile outputs into one row-major count per image pixel. `tasks[i]` produced
/// `outputs[i]`; every task must be a tile of this image with an output of the right size.
pub fn assemble_counts<O: AsRef<[u8]>>(
    image_width: u32,
    image_height: u32,
    tasks: &[TaskSpec],
    outputs: &[O],
) -> Result<Vec<u32>> {
    if tasks.len() != outputs.len() {
        return Err(kernel_error(format!("{} tasks but {} outputs", tasks.len(), outputs.len())));
    }
    let (w, h) = (image_width as usize, image_height as usize);
    let mut counts = vec![0u32; w * h];
    for (i, (task, output)) in tasks.iter().zip(outputs).enumerate() {
        let p = MandelbrotParams::from_words(&task.params)?;
        let output = output.as_ref();
        if p.image_width != image_width || p.image_height != image_height {
            return Err(kernel_error(format!("task {i} is a tile of another image size")));
        }
        if output.len() != p.output_size() as usize {
            return Err(kernel_error(format!("output {i} has {} bytes, expected {}", output.len(), p.output_size())));
        }
        let t = p.tile;
        for (row, bytes) in output.chunks_exact(t.width as usize * 4).enumerate() {
            let start = (t.y as usize + row) * w + t.x as usize;
            for (dst, word) in counts[start..start + t.width as usize].iter_mut().zip(bytes.chunks_exact(4)) {
                *dst = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            }
        }
    }
    Ok(counts)
}

/// Stitches tile outputs into an RGB8 image (3 bytes per pixel, row-major), coloured with
/// [`colorize`]. Arguments as for [`assemble_counts`].
pub fn assemble_image<O: AsRef<[u8]>>(
    image_width: u32,
    image_height: u32,
    tasks: &[TaskSpec],
    outputs: &[O],
) -> Result<Vec<u8>> {
    let max_iter = match tasks.first() {
        Some(task) => MandelbrotParams::from_words(&task.params)?.max_iter,
        None => 0,
    };
    let counts = assemble_counts(image_width, image_height, tasks, outputs)?;
    Ok(counts.iter().flat_map(|&c| colorize(c, max_iter)).collect())
}

/// A colour for an escape count: black inside the set, a blue-orange-white ramp outside it.
pub fn colorize(count: u32, max_iter: u32) -> [u8; 3] {
    if count >= max_iter {
        return [0, 0, 0];
    }
    // The square root spreads the many low counts over more of the ramp.
    let t = (f64::from(count) / f64::from(max_iter)).sqrt();
    let u = 1.0 - t;
    let channel = |v: f64| (v * 255.0).clamp(0.0, 255.0) as u8;
    [
        channel(9.0 * u * t * t * t + t * t),
        channel(15.0 * u * u * t * t + 0.5 * t * t),
        channel(8.5 * u * u * u * t + 0.3 * t),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_multiply_matches_wide_arithmetic() {
        let values = [
            0,
            1,
            -1,
            ONE,
            -ONE,
            2 * ONE,
            -2 * ONE,
            ONE / 2,
            -ONE / 3,
            i32::MAX,
            i32::MIN,
            i32::MIN + 1,
            0x1234_5678,
            -0x0765_4321,
        ];
        for &a in &values {
            for &b in &values {
                assert_eq!(fixed_mul_limbs(a, b), fixed_mul(a, b) as u32, "{a} * {b}");
            }
        }
        assert_eq!(fixed_mul(ONE / 2, ONE / 2), ONE / 4);
        assert_eq!(fixed_mul(-ONE, 3 * ONE / 2), -3 * ONE / 2);
        // Floors towards minus infinity, like an arithmetic shift.
        assert_eq!(fixed_mul(-1, 1), -1);
        assert_eq!(fixed_mul(1, 1), 0);
        assert_eq!(to_fixed(-1.5), -3 * ONE / 2);
        assert_eq!(from_fixed(to_fixed(0.25)), 0.25);
        assert_eq!(to_fixed(100.0), i32::MAX);
    }

    #[test]
    fn known_escape_counts() {
        assert_eq!(escape_count(0, 0, 500), 500);
        assert_eq!(escape_count(-ONE, 0, 500), 500, "-1 is a 2-cycle inside the set");
        assert_eq!(escape_count(2 * ONE, 2 * ONE, 500), 1);
        assert_eq!(escape_count(3 * ONE, 0, 500), 1);
        // c = 1: 0, 1, 2, 5 -> |z| passes 2 at the third update
        assert_eq!(escape_count(ONE, 0, 500), 3);
        assert_eq!(escape_count(ONE, 0, 2), 2, "capped at max_iter");
        assert_eq!(escape_count(0, 0, 0), 0);
    }

    #[test]
    fn tiles_cover_the_image_once() {
        let tiles = tiles(50, 33, 16);
        assert_eq!(tiles.len(), 4 * 3);
        assert_eq!(tiles.iter().map(|t| t.width * t.height).sum::<u32>(), 50 * 33);
        assert_eq!(tiles[3], Tile { x: 48, y: 0, width: 2, height: 16 });
        assert!(super::tiles(0, 10, 16).is_empty());
    }

    #[test]
    fn params_round_trip_and_refuse_bad_tiles() {
        let p =
            MandelbrotParams::for_tile(64, 48, Tile { x: 16, y: 32, width: 48, height: 16 }, 100, (-0.5, 0.25), 3.0);
        assert_eq!(MandelbrotParams::from_words(&p.to_words()).unwrap(), p);
        assert_eq!(p.workgroups(), [3, 1, 1]);
        assert_eq!(p.output_size(), 48 * 16 * 4);
        let mut outside = p;
        outside.tile.x = 17;
        assert!(MandelbrotParams::from_words(&outside.to_words()).is_err());
        let mut empty = p;
        empty.tile.height = 0;
        assert!(MandelbrotParams::from_words(&empty.to_words()).is_err());
        assert!(MandelbrotParams::from_words(&[0; 9]).is_err());
    }

    #[test]
    fn assembled_tiles_equal_a_single_tile() {
        let (w, h) = (37, 21);
        let tasks = tile_job_tasks(w, h, 16, 64, (-0.5, 0.0), 3.0);
        let outputs: Vec<Vec<u8>> =
            tasks.iter().map(|t| MandelbrotParams::from_words(&t.params).unwrap().cpu()).collect();
        let whole = MandelbrotParams::for_tile(w, h, Tile { x: 0, y: 0, width: w, height: h }, 64, (-0.5, 0.0), 3.0);
        let counts = assemble_counts(w, h, &tasks, &outputs).unwrap();
        assert_eq!(words_to_bytes(&counts), whole.cpu());
        let image = assemble_image(w, h, &tasks, &outputs).unwrap();
        assert_eq!(image.len(), (w * h * 3) as usize);
        // The image centre, c = -0.5, is inside the set: black.
        let centre = ((h / 2 * w + w / 2) * 3) as usize;
        assert_eq!(&image[centre..centre + 3], &[0, 0, 0]);
        assert!(assemble_counts(w, h, &tasks[1..], &outputs).is_err());
    }
}
