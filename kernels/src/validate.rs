//! Validation of client WGSL before anything runs it: naga parses and validates the module, then
//! [`validate_kernel`] enforces the binding convention of [`starling_protocol::job`] and the
//! WebGPU default compute limits, so an accepted kernel binds and runs on every worker.
//!
//! Every error names a 1-based line and column (line 1, column 1 when naga gives no span), so the
//! relay can tell a client exactly where its kernel is wrong.

use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::{AddressSpace, ShaderStage, Span, StorageAccess};

pub use crate::error::WgslError;

/// WebGPU's guaranteed `maxComputeInvocationsPerWorkgroup`.
pub const MAX_INVOCATIONS_PER_WORKGROUP: u32 = 256;
/// WebGPU's guaranteed `maxComputeWorkgroupSizeX`/`Y`/`Z`.
pub const MAX_WORKGROUP_SIZE: [u32; 3] = [256, 256, 64];
/// WebGPU's guaranteed `maxComputeWorkgroupStorageSize`, in bytes.
pub const MAX_WORKGROUP_STORAGE_BYTES: u64 = 16 << 10;

impl WgslError {
    fn at(source: &str, span: Option<Span>, message: impl Into<String>) -> Self {
        let (line, column) = match span {
            Some(span) if span.is_defined() && !source.is_empty() => {
                let loc = span.location(source);
                (loc.line_number, loc.line_position)
            }
            _ => (1, 1),
        };
        WgslError { line, column, message: message.into() }
    }
}

/// Parses and validates `source`, and checks that `entry_point` is a compute entry point that
/// follows the binding convention for a task with `n_inputs` input blobs:
///
/// - every resource is in `@group(0)`;
/// - `@binding(0)`, if declared, is a uniform buffer (the task's params);
/// - `@binding(1..=n_inputs)`, if declared, are read-only storage buffers (the inputs);
/// - `@binding(n_inputs + 1)` is a `read_write` storage buffer (the output) and must be declared;
/// - nothing else: no other bindings, textures, samplers or immediates (push constants);
/// - the workgroup size and workgroup memory fit WebGPU's default limits.
pub fn validate_kernel(source: &str, entry_point: &str, n_inputs: usize) -> Result<naga::Module, WgslError> {
    on_parser_stack(|| validate_here(source, entry_point, n_inputs))
}

/// Validates a pipeline's module once for all its stages (`(entry point, inputs)` each): every
/// stage is a compute entry point, and the resources each one uses follow the binding convention
/// for its own inputs (one module may declare every stage's resources; a resource no stage uses
/// is refused).
pub fn validate_pipeline(source: &str, stages: &[(&str, usize)]) -> Result<naga::Module, WgslError> {
    pipeline_checked(source, stages).map(|(module, _)| module)
}

/// [`validate_pipeline`], also giving each stage's [`min_binding_sizes`].
#[allow(clippy::type_complexity)]
pub fn pipeline_checked(
    source: &str,
    stages: &[(&str, usize)],
) -> Result<(naga::Module, Vec<Vec<(u32, u64)>>), WgslError> {
    on_parser_stack(|| {
        let (module, info) = parse_and_validate(source)?;
        let mut used_anywhere = std::collections::HashSet::new();
        let mut sizes = Vec::with_capacity(stages.len());
        for (i, &(entry_point, n_inputs)) in stages.iter().enumerate() {
            let at = |e: WgslError| WgslError { message: format!("stage {i} (`{entry_point}`): {}", e.message), ..e };
            check_entry_point(&module, source, entry_point).map_err(at)?;
            let index = module.entry_points.iter().position(|e| e.name == entry_point).expect("checked above");
            let uses = info.get_entry_point(index);
            let used = |h: naga::Handle<naga::GlobalVariable>| !uses[h].is_empty();
            used_anywhere.extend(module.global_variables.iter().map(|(h, _)| h).filter(|&h| used(h)));
            check_bindings(&module, source, n_inputs, used).map_err(at)?;
            sizes.push(min_binding_sizes(&module, used));
        }
        if let Some((h, var)) = module.global_variables.iter().find(|(h, v)| {
            !used_anywhere.contains(h) && matches!(v.space, AddressSpace::Uniform | AddressSpace::Storage { .. })
        }) {
            let name = var.name.as_deref().unwrap_or("<unnamed>");
            return Err(WgslError::at(
                source,
                Some(module.global_variables.get_span(h)),
                format!("`{name}` is used by no stage"),
            ));
        }
        check_workgroup_memory(&module, source)?;
        Ok((module, sizes))
    })
}

/// The smallest buffer each resource `considered` needs, by binding: its type's size, or for a
/// runtime-sized array (alone or ending a struct) the fixed part and one element. WebGPU checks
/// this only when the work is dispatched, so the relay checks it against the sizes a task binds
/// before it takes the job: a job no worker could run is refused, not failed on every worker.
pub fn min_binding_sizes(
    module: &naga::Module,
    considered: impl Fn(naga::Handle<naga::GlobalVariable>) -> bool,
) -> Vec<(u32, u64)> {
    let mut layouter = naga::proc::Layouter::default();
    if layouter.update(module.to_ctx()).is_err() {
        return Vec::new();
    }
    let dynamic_stride = |ty: naga::Handle<naga::Type>| match module.types[ty].inner {
        naga::TypeInner::Array { size: naga::ArraySize::Dynamic, stride, .. } => Some(u64::from(stride)),
        _ => None,
    };
    module
        .global_variables
        .iter()
        .filter(|(h, v)| considered(*h) && matches!(v.space, AddressSpace::Uniform | AddressSpace::Storage { .. }))
        .filter_map(|(_, v)| {
            let binding = v.binding.as_ref()?.binding;
            let min = match &module.types[v.ty].inner {
                naga::TypeInner::Struct { members, .. } => match members.last() {
                    Some(last) if dynamic_stride(last.ty).is_some() => {
                        u64::from(last.offset) + dynamic_stride(last.ty).unwrap_or(0)
                    }
                    _ => u64::from(layouter[v.ty].size),
                },
                _ => dynamic_stride(v.ty).unwrap_or_else(|| u64::from(layouter[v.ty].size)),
            };
            Some((binding, min))
        })
        .collect()
}

/// Runs `f` on a thread whose stack fits the deepest WGSL the parser may see (natively).
fn on_parser_stack<T: Send>(f: impl FnOnce() -> Result<T, WgslError> + Send) -> Result<T, WgslError> {
    // naga's WGSL parser recurses once per prefix operator with no depth limit: 6,000 of them
    // (6 KB of `!`) overflow a 2 MiB stack and abort the process. Parsing on a thread with a
    // stack that fits the deepest nesting `MAX_WGSL_BYTES` allows (about 400 bytes a level)
    // turns every such source into an answer. The stack is reserved, not committed: only what
    // the parse touches costs memory.
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("wgsl-validate".into())
                .stack_size(PARSER_STACK_BYTES)
                .spawn_scoped(scope, f)
                .map_err(|e| WgslError { line: 1, column: 1, message: format!("validator unavailable: {e}") })?
                .join()
                .unwrap_or_else(|_| Err(WgslError { line: 1, column: 1, message: "the validator failed".into() }))
        })
    }
    #[cfg(target_arch = "wasm32")]
    f()
}

/// Stack for parsing client WGSL: 64 KiB of nested operators needs about 26 MiB.
#[cfg(not(target_arch = "wasm32"))]
const PARSER_STACK_BYTES: usize = 64 << 20;

/// Deepest nesting of brackets, and longest run of prefix operators, that client WGSL may use.
/// Real kernels stay far below; deeper sources could still overflow the stack of a worker whose
/// driver parses WGSL on its own thread.
pub const MAX_WGSL_NESTING: usize = 256;

/// Refuses sources nested deeper than [`MAX_WGSL_NESTING`], pointing at where the limit is passed.
fn check_nesting(source: &str) -> Result<(), WgslError> {
    let (mut depth, mut run, mut line, mut column) = (0usize, 0usize, 1u32, 0u32);
    let mut chars = source.chars().peekable();
    let mut block_comments = 0usize;
    while let Some(ch) = chars.next() {
        column += ch.len_utf8() as u32;
        if ch == '\n' {
            (line, column) = (line + 1, 0);
            run = 0;
            continue;
        }
        if block_comments > 0 {
            match (ch, chars.peek()) {
                ('*', Some('/')) => {
                    chars.next();
                    column += 1;
                    block_comments -= 1;
                }
                ('/', Some('*')) => {
                    chars.next();
                    column += 1;
                    block_comments += 1;
                }
                _ => {}
            }
            continue;
        }
        match (ch, chars.peek()) {
            ('/', Some('/')) => {
                // A line comment: skip to its end.
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
                continue;
            }
            ('/', Some('*')) => {
                chars.next();
                column += 1;
                block_comments = 1;
                continue;
            }
            _ => {}
        }
        match ch {
            '(' | '[' | '{' => (depth, run) = (depth + 1, 0),
            ')' | ']' | '}' => (depth, run) = (depth.saturating_sub(1), 0),
            '!' | '-' | '~' | '*' | '&' => run += 1,
            c if c.is_whitespace() => {}
            _ => run = 0,
        }
        if depth > MAX_WGSL_NESTING || run > MAX_WGSL_NESTING {
            return Err(WgslError { line, column, message: format!("nested deeper than {MAX_WGSL_NESTING} levels") });
        }
    }
    Ok(())
}

fn parse_and_validate(source: &str) -> Result<(naga::Module, naga::valid::ModuleInfo), WgslError> {
    check_nesting(source)?;
    let module = naga::front::wgsl::parse_str(source).map_err(|e| {
        let (line, column) = e.location(source).map_or((1, 1), |l| (l.line_number, l.line_position));
        WgslError { line, column, message: e.message().to_string() }
    })?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::default()).validate(&module).map_err(|e| {
        let span = e.spans().next().map(|(span, _)| *span);
        WgslError::at(source, span, error_chain(e.as_inner()))
    })?;
    Ok((module, info))
}

fn validate_here(source: &str, entry_point: &str, n_inputs: usize) -> Result<naga::Module, WgslError> {
    let (module, _) = parse_and_validate(source)?;
    check_entry_point(&module, source, entry_point)?;
    check_bindings(&module, source, n_inputs, |_| true)?;
    check_workgroup_memory(&module, source)?;
    Ok(module)
}

/// The error and all its causes, so a client sees the innermost reason ("Operation Add can't
/// work with ...") rather than only "Function 'main' is invalid".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message
}

fn check_entry_point(module: &naga::Module, source: &str, entry_point: &str) -> Result<(), WgslError> {
    let Some(entry) = module.entry_points.iter().find(|e| e.name == entry_point) else {
        // A plain function of that name is the likely mistake: point at it.
        let function = module.functions.iter().find(|(_, f)| f.name.as_deref() == Some(entry_point));
        let span = function.map(|(handle, _)| module.functions.get_span(handle));
        let message = if span.is_some() {
            format!("function `{entry_point}` is not an entry point: add @compute @workgroup_size(..)")
        } else {
            format!("no entry point named `{entry_point}`")
        };
        return Err(WgslError::at(source, span, message));
    };
    let entry_span = find_fn(source, entry_point);
    if entry.stage != ShaderStage::Compute {
        return Err(WgslError::at(
            source,
            entry_span,
            format!("entry point `{entry_point}` is a {:?} shader, not a compute shader", entry.stage),
        ));
    }
    if entry.workgroup_size_overrides.is_some() {
        return Err(WgslError::at(source, entry_span, "the workgroup size must be a constant, not an override"));
    }
    let size = entry.workgroup_size;
    let invocations = size.iter().map(|&s| u64::from(s)).product::<u64>();
    if size.iter().zip(MAX_WORKGROUP_SIZE).any(|(&s, max)| s > max)
        || invocations > u64::from(MAX_INVOCATIONS_PER_WORKGROUP)
    {
        return Err(WgslError::at(
            source,
            entry_span,
            format!(
                "workgroup size {size:?} is over WebGPU's limits ({MAX_WORKGROUP_SIZE:?} per dimension, \
                 {MAX_INVOCATIONS_PER_WORKGROUP} invocations)"
            ),
        ));
    }
    Ok(())
}

/// Where `fn name` is declared, for errors about an entry point (naga keeps no span for those).
fn find_fn(source: &str, name: &str) -> Option<Span> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(found) = source[from..].find("fn") {
        let start = from + found;
        from = start + 2;
        if source[..start].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let rest = &source[start + 2..];
        let trimmed = rest.trim_start();
        if rest.len() == trimmed.len() {
            continue;
        }
        if let Some(after) = trimmed.strip_prefix(name)
            && !after.starts_with(is_ident)
        {
            let offset = start + 2 + (rest.len() - trimmed.len());
            return Some(Span::new(offset as u32, (offset + name.len()) as u32));
        }
    }
    None
}

/// The binding convention for `n_inputs` inputs, over the resources `considered` (a pipeline
/// stage's: those its entry point uses; a plain kernel's: all).
fn check_bindings(
    module: &naga::Module,
    source: &str,
    n_inputs: usize,
    considered: impl Fn(naga::Handle<naga::GlobalVariable>) -> bool,
) -> Result<(), WgslError> {
    let output_binding = n_inputs as u64 + 1;
    let mut seen = Vec::new();
    let mut has_output = false;
    for (handle, var) in module.global_variables.iter().filter(|(h, _)| considered(*h)) {
        let span = Some(module.global_variables.get_span(handle));
        let name = var.name.as_deref().unwrap_or("<unnamed>");
        let fail = |message: String| Err(WgslError::at(source, span, message));
        match var.space {
            AddressSpace::Function | AddressSpace::Private | AddressSpace::WorkGroup => continue,
            AddressSpace::Uniform | AddressSpace::Storage { .. } => {}
            AddressSpace::Handle => return fail(format!("`{name}`: textures and samplers are not supported")),
            AddressSpace::Immediate => return fail(format!("`{name}`: immediates (push constants) are not supported")),
            other => return fail(format!("`{name}`: address space {other:?} is not supported")),
        }
        let Some(binding) = &var.binding else {
            return fail(format!("`{name}` needs @group(0) @binding(..)"));
        };
        if binding.group != 0 {
            return fail(format!("`{name}` is in group {}; every resource must be in group 0", binding.group));
        }
        if seen.contains(&binding.binding) {
            return fail(format!("binding {} is declared twice", binding.binding));
        }
        seen.push(binding.binding);
        let b = u64::from(binding.binding);
        match var.space {
            AddressSpace::Uniform if b == 0 => {}
            _ if b == 0 => return fail(format!("`{name}`: binding 0 must be the uniform params buffer")),
            AddressSpace::Storage { access } if b <= n_inputs as u64 => {
                if access.contains(StorageAccess::STORE) {
                    return fail(format!("`{name}`: input binding {b} must be var<storage, read>"));
                }
            }
            AddressSpace::Storage { access } if b == output_binding => {
                if !access.contains(StorageAccess::STORE) {
                    return fail(format!("`{name}`: output binding {b} must be var<storage, read_write>"));
                }
                has_output = true;
            }
            _ if b <= n_inputs as u64 => {
                return fail(format!("`{name}`: input binding {b} must be var<storage, read>"));
            }
            _ if b == output_binding => {
                return fail(format!("`{name}`: output binding {b} must be var<storage, read_write>"));
            }
            _ => {
                return fail(format!(
                    "`{name}`: binding {b} is outside the convention (0 params, 1..={n_inputs} inputs, \
                     {output_binding} output)"
                ));
            }
        }
    }
    if !has_output {
        return Err(WgslError::at(
            source,
            None,
            format!("missing the output: @group(0) @binding({output_binding}) var<storage, read_write>"),
        ));
    }
    Ok(())
}

fn check_workgroup_memory(module: &naga::Module, source: &str) -> Result<(), WgslError> {
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).map_err(|e| WgslError::at(source, None, format!("type layout: {e}")))?;
    let mut total = 0u64;
    for (handle, var) in module.global_variables.iter() {
        if var.space == AddressSpace::WorkGroup {
            // WebGPU rounds each workgroup variable up to 16 bytes when it counts this limit.
            total += u64::from(layouter[var.ty].size).next_multiple_of(16);
            if total > MAX_WORKGROUP_STORAGE_BYTES {
                return Err(WgslError::at(
                    source,
                    Some(module.global_variables.get_span(handle)),
                    format!("workgroup memory is over {MAX_WORKGROUP_STORAGE_BYTES} bytes"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_refused_with_where_but_comments_and_real_kernels_pass() {
        let frame = |body: &str| {
            format!(
                "@group(0) @binding(1) var<storage, read_write> o: array<u32>;\n\
                 @compute @workgroup_size(1) fn main() {{\n let x = {body}; o[0] = 1u; }}"
            )
        };
        for body in ["!".repeat(300) + "true", "(".repeat(300) + "1u" + &")".repeat(300), "- ".repeat(300) + "1"] {
            let e = validate_kernel(&frame(&body), "main", 0).expect_err("refused");
            assert!(e.message.contains("nested deeper"), "{e}");
            assert_eq!(e.line, 3, "{e}");
        }
        // Long runs of operator characters in comments are not nesting.
        let commented = format!("// {}\n/* {} */\n{}", "-".repeat(400), "*".repeat(400), frame("!true"));
        validate_kernel(&commented, "main", 0).expect("a comment is not nesting");
        validate_kernel(&frame(&("!".repeat(200) + "true")), "main", 0).expect("within the limit");
    }

    const DOUBLE: &str = "\
@group(0) @binding(0) var<uniform> params: vec4<u32>;
@group(0) @binding(1) var<storage, read> input: array<u32>;
@group(0) @binding(2) var<storage, read_write> output: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < params.x) {
        output[id.x] = input[id.x] * 2u;
    }
}
";

    fn err(source: &str, entry: &str, n_inputs: usize) -> WgslError {
        validate_kernel(source, entry, n_inputs).expect_err("should be refused")
    }

    #[test]
    fn valid_kernel_passes() {
        let module = validate_kernel(DOUBLE, "main", 1).unwrap();
        assert_eq!(module.entry_points.len(), 1);
        // The output alone is enough: params and inputs are optional.
        let minimal = "@group(0) @binding(1) var<storage, read_write> o: array<u32>;\n\
                       @compute @workgroup_size(1) fn main() { o[0] = 7u; }";
        validate_kernel(minimal, "main", 0).unwrap();
    }

    #[test]
    fn refusal_table() {
        /// (case, source, entry point, n_inputs, expected line:column, message fragment)
        type Case = (&'static str, String, &'static str, usize, (u32, u32), &'static str);
        let cases: &[Case] = &[
            ("syntax error", DOUBLE.replace("input[id.x] * 2u;", "input[id.x] * 2u"), "main", 1, (9, 5), "expected"),
            (
                "type error",
                DOUBLE.replace("input[id.x] * 2u", "input[id.x] * 2.0"),
                "main",
                1,
                (8, 9),
                "cannot convert",
            ),
            ("missing entry point", DOUBLE.to_string(), "run", 1, (1, 1), "no entry point named `run`"),
            (
                "plain function named like the entry point",
                format!("{DOUBLE}\nfn helper() {{}}\n"),
                "helper",
                1,
                (12, 1),
                "not an entry point",
            ),
            (
                "wrong stage",
                "@group(0) @binding(1) var<storage, read_write> o: array<f32>;\n\
                 @vertex fn main() -> @builtin(position) vec4<f32> { return vec4<f32>(o[0]); }"
                    .to_string(),
                "main",
                0,
                (2, 12),
                "not a compute shader",
            ),
            (
                "wrong binding type for an input",
                DOUBLE.replace("var<storage, read> input", "var<storage, read_write> input"),
                "main",
                1,
                (2, 23),
                "must be var<storage, read>",
            ),
            (
                "params not uniform",
                DOUBLE.replace("var<uniform> params: vec4<u32>", "var<storage, read> params: vec4<u32>"),
                "main",
                1,
                (1, 23),
                "binding 0 must be the uniform",
            ),
            (
                "extra group",
                DOUBLE.replace("@group(0) @binding(1)", "@group(1) @binding(1)"),
                "main",
                1,
                (2, 23),
                "group 1",
            ),
            (
                "missing output",
                DOUBLE.replace("@binding(2)", "@binding(3)"),
                "main",
                1,
                (3, 23),
                "outside the convention",
            ),
            (
                "output absent entirely",
                "@group(0) @binding(1) var<storage, read> i: array<u32>;\n\
                 var<private> sink: u32;\n\
                 @compute @workgroup_size(1) fn main() { sink = i[0]; }"
                    .to_string(),
                "main",
                1,
                (1, 1),
                "missing the output",
            ),
            (
                "read-only output",
                "@group(0) @binding(1) var<storage, read> i: array<u32>;\n\
                 @group(0) @binding(2) var<storage, read> o: array<u32>;\n\
                 var<private> sink: u32;\n\
                 @compute @workgroup_size(1) fn main() { sink = i[0] + o[0]; }"
                    .to_string(),
                "main",
                1,
                (2, 23),
                "output binding 2 must be var<storage, read_write>",
            ),
            (
                "too many invocations",
                DOUBLE.replace("@workgroup_size(64)", "@workgroup_size(32, 32)"),
                "main",
                1,
                (6, 4),
                "over WebGPU's limits",
            ),
            (
                "sampler",
                format!("{DOUBLE}@group(0) @binding(3) var s: sampler;\n"),
                "main",
                1,
                (11, 23),
                "textures and samplers",
            ),
        ];
        let mut failures = Vec::new();
        for (name, source, entry, n_inputs, (line, column), fragment) in cases {
            let e = err(source, entry, *n_inputs);
            if (e.line, e.column) != (*line, *column) || !e.message.contains(fragment) {
                failures.push(format!("{name}: expected {line}:{column} containing {fragment:?}, got {e}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn validator_errors_carry_spans() {
        // Parses fine, but the validator refuses a store through a read-only binding.
        let source = DOUBLE.replace("output[id.x] = input[id.x] * 2u;", "output[id.x] = 1u;\n        input[0] = 1u;");
        let e = err(&source, "main", 1);
        assert_ne!((e.line, e.column), (1, 1), "{e}");
        assert_eq!(e.line, 9, "{e}");
    }

    #[test]
    fn error_display_is_line_colon_column() {
        let e = WgslError { line: 3, column: 7, message: "oops".into() };
        assert_eq!(e.to_string(), "3:7: oops");
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"line":3,"column":7,"message":"oops"}"#);
    }
}
