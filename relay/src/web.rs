//! The web app (`www/`): static files with the right MIME types (`application/wasm` included),
//! precompressed `.br`/`.gz` siblings when the build wrote them, and `index.html` for deep links
//! (`/jobs/7`), so the Leptos router can take over. A missing file (a path whose last segment
//! has an extension, like `/pkg/app.wasm`) is a plain 404, never `index.html` with 200, so a
//! stale cache or a broken build fails loudly. Unknown `/v1/...` paths stay JSON 404s.
//!
//! Every response carries a Content-Security-Policy that allows only what the app needs
//! ([`content_security_policy`]): its own scripts (and the inline ones of `index.html`, by hash),
//! WebAssembly, its own workers, and connections to this and other relays (the Network page may
//! pick another), so a script injected into the page cannot load or run anything else.

use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use starling_protocol::api::build_name_in;
use std::convert::Infallible;
use std::path::PathBuf;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_http::services::{ServeDir, ServeFile};

/// Files whose name never changes between builds revalidate on every load (cheap with ETags);
/// the service worker keeps the app working offline.
const CACHE_CONTROL: &str = "no-cache";
/// A build's folder, `/pkg/app-<hash of its files>/`, never changes under its name
/// (scripts/build-web.sh): its files are kept for good.
const CACHE_BUILD: &str = "public, max-age=31536000, immutable";

/// Whether `path` is a file in a build's folder: `/pkg/app-<16 hex>/…`.
fn in_build_folder(path: &str) -> bool {
    path.strip_prefix("/pkg/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(folder, file)| build_name_in(folder) == Some(folder) && !file.is_empty())
}

/// The policy for the app whose `index.html` is `html`: its inline scripts are allowed by their
/// SHA-256, nothing else inline. Styles may be inline (the app sets style attributes); images
/// may be `data:` and `blob:` URLs (previews and downloads). Connections go to any relay (`http`,
/// `https`, `ws`, `wss`): the browser worker and the pages talk to the relay the person picked.
pub fn content_security_policy(html: &str) -> String {
    let hashes: String = inline_scripts(html)
        .into_iter()
        .map(|script| {
            use base64::Engine as _;
            use sha2::Digest as _;
            format!(" 'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script)))
        })
        .collect();
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; connect-src 'self' http: https: ws: wss:; worker-src 'self'; \
         manifest-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The text of each `<script>` without a `src` in `html`, as the browser hashes it.
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else { break };
        let tag = &after[..open_end];
        let body = &after[open_end + 1..];
        let Some(close) = body.find("</script>") else { break };
        if !tag.contains("src=") {
            out.push(&body[..close]);
        }
        rest = &body[close + "</script>".len()..];
    }
    out
}

/// The `Link` header for the app's page: preload the current build's main module and glue
/// (named by `www/pkg/app.js`, `app_js` here), so they download while the page's own scripts
/// load instead of after them.
fn preload_link(app_js: &str) -> Option<String> {
    let build = build_name_in(app_js)?;
    Some(format!(
        "</pkg/{build}/starling_frontend_bg.wasm>; rel=preload; as=fetch; type=\"application/wasm\"; crossorigin, \
         </pkg/{build}/starling_frontend.js>; rel=modulepreload"
    ))
}

/// `www/pkg/app.js`, read for each page (a few hundred bytes; a build may replace it at any time).
async fn current_build_link(dir: &std::path::Path) -> Option<HeaderValue> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(dir.join("pkg/app.js")).await.ok()?;
    let mut text = String::new();
    file.take(4096).read_to_string(&mut text).await.ok()?;
    HeaderValue::from_str(&preload_link(&text)?).ok()
}

pub fn service(dir: PathBuf) -> BoxCloneSyncService<Request<Body>, Response, Infallible> {
    let csp = HeaderValue::from_str(&content_security_policy(
        &std::fs::read_to_string(dir.join("index.html")).unwrap_or_default(),
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"));
    let files = ServeDir::new(&dir).precompressed_br().precompressed_gzip();
    let app_routes =
        files.clone().fallback(ServeFile::new(dir.join("index.html")).precompressed_br().precompressed_gzip());
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<Body>| {
        let (files, app_routes, csp, dir) = (files.clone(), app_routes.clone(), csp.clone(), dir.clone());
        async move {
            let path = req.uri().path();
            if path.starts_with("/v1/") || path == "/v1" {
                return Ok(super::api_not_found());
            }
            let is_file = path.rsplit('/').next().is_some_and(|last| last.contains('.'));
            let immutable = is_file && in_build_folder(path);
            let page = !is_file || path == "/index.html";
            let response = if is_file { files.oneshot(req).await } else { app_routes.oneshot(req).await };
            let mut response = match response {
                Ok(r) => r.into_response(),
                Err(e) => match e {},
            };
            // A 304 keeps the build file's caching: its headers replace the stored ones.
            let kept = response.status().is_success() || response.status() == axum::http::StatusCode::NOT_MODIFIED;
            let cache = if immutable && kept { CACHE_BUILD } else { CACHE_CONTROL };
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            if page
                && response.status().is_success()
                && let Some(link) = current_build_link(&dir).await
            {
                response.headers_mut().insert(header::LINK, link);
            }
            response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
            Ok(response)
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn the_policy_hashes_inline_scripts_only() {
        let html = "<script>a()</script><script type=\"module\">\nb()\n</script><script src=\"/x.js\"></script>";
        assert_eq!(inline_scripts(html), vec!["a()", "\nb()\n"]);
        let csp = content_security_policy(html);
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest("a()"));
        assert!(csp.contains(&format!("'sha256-{hash}'")), "{csp}");
        assert_eq!(csp.matches("'sha256-").count(), 2);
        assert!(!csp.contains("'unsafe-eval'") && !csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("object-src 'none'"));
    }

    /// The app's own index.html: both its inline scripts are allowed.
    #[test]
    fn the_apps_inline_scripts_are_allowed() {
        let html =
            std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../www/index.html")).unwrap();
        assert_eq!(inline_scripts(&html).len(), 2);
        assert_eq!(content_security_policy(&html).matches("'sha256-").count(), 2);
    }

    /// A `www/` as `scripts/build-web.sh` lays it out: files with precompressed siblings.
    fn www() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("starling-www-{}-{}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir_all(dir.join("pkg")).unwrap();
        let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
        write("index.html", b"<!doctype html><title>Starling</title>");
        write("index.html.gz", b"gzipped index");
        write("manifest.webmanifest", br#"{"name":"Starling"}"#);
        write("pkg/app_bg.wasm", b"\0asm\x01\0\0\0");
        write("pkg/app_bg.wasm.br", b"brotli wasm");
        write("pkg/app_bg.wasm.gz", b"gzip wasm");
        write("pkg/app.js", b"export * from './app-0123456789abcdef/starling_frontend.js';");
        std::fs::create_dir_all(dir.join("pkg/app-0123456789abcdef")).unwrap();
        write("pkg/app-0123456789abcdef/chunk_1.wasm", b"\0asm\x01\0\0\0");
        dir
    }

    async fn get(
        dir: &std::path::Path,
        path: &str,
        accept: Option<&str>,
    ) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
        let mut req = Request::get(path);
        if let Some(enc) = accept {
            req = req.header(header::ACCEPT_ENCODING, enc);
        }
        let res = service(dir.to_path_buf()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = res.status();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap().to_vec();
        (status, headers, body)
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_page_preloads_the_current_build() {
        let app_js =
            "// Written by scripts/build-web.sh\nexport * from './app-0123456789abcdef/starling_frontend.js';\n";
        let link = preload_link(app_js).unwrap();
        assert!(
            link.starts_with("</pkg/app-0123456789abcdef/starling_frontend_bg.wasm>; rel=preload; as=fetch"),
            "{link}"
        );
        assert!(link.contains("</pkg/app-0123456789abcdef/starling_frontend.js>; rel=modulepreload"), "{link}");
        for bad in
            ["", "export * from './app-0123/starling_frontend.js';", "export * from './app-0123456789abcdeZ/x.js';"]
        {
            assert_eq!(preload_link(bad), None, "{bad}");
        }
    }

    #[test]
    fn build_folders_are_told_apart() {
        for (path, want) in [
            ("/pkg/app-0123456789abcdef/main.wasm", true),
            ("/pkg/app-0123456789abcdef/snippets/x/keystore.js", true),
            ("/pkg/app-0123456789abcdef/", false),
            ("/pkg/app-0123456789abcdeg/main.wasm", false),
            ("/pkg/app-0123/main.wasm", false),
            ("/pkg/app.js", false),
            ("/pkg/app-0123456789abcdef", false),
            ("/worker.js", false),
        ] {
            assert_eq!(in_build_folder(path), want, "{path}");
        }
    }

    #[tokio::test]
    async fn serves_the_app_with_types_compression_and_deep_links() {
        let dir = www();
        // (path, Accept-Encoding, status, content type, content encoding, body)
        type Case<'a> = (&'a str, Option<&'a str>, u16, Option<&'a str>, Option<&'a str>, &'a [u8]);
        let cases: &[Case] = &[
            ("/pkg/app_bg.wasm", None, 200, Some("application/wasm"), None, b"\0asm\x01\0\0\0"),
            ("/pkg/app_bg.wasm", Some("br, gzip"), 200, Some("application/wasm"), Some("br"), b"brotli wasm"),
            ("/pkg/app_bg.wasm", Some("gzip"), 200, Some("application/wasm"), Some("gzip"), b"gzip wasm"),
            (
                "/pkg/app.js",
                None,
                200,
                Some("text/javascript"),
                None,
                b"export * from './app-0123456789abcdef/starling_frontend.js';",
            ),
            ("/manifest.webmanifest", None, 200, Some("application/manifest+json"), None, br#"{"name":"Starling"}"#),
            ("/", None, 200, Some("text/html"), None, b"<!doctype html><title>Starling</title>"),
            // Deep links are the app's routes: index.html, compressed where the client takes it.
            ("/jobs/7", None, 200, Some("text/html"), None, b"<!doctype html><title>Starling</title>"),
            ("/contribute", Some("gzip"), 200, Some("text/html"), Some("gzip"), b"gzipped index"),
            // A build's folder: kept for good (below).
            ("/pkg/app-0123456789abcdef/chunk_1.wasm", None, 200, Some("application/wasm"), None, b"\0asm\x01\0\0\0"),
            // A missing file is a 404, not the app shell.
            ("/pkg/missing.wasm", None, 404, None, None, b""),
            ("/pkg/app-0123456789abcdef/gone.wasm", None, 404, None, None, b""),
            // Not a file: the app's page, which is never kept for good.
            (
                "/pkg/app-0123456789abcdef/route",
                None,
                200,
                Some("text/html"),
                None,
                b"<!doctype html><title>Starling</title>",
            ),
        ];
        for &(path, accept, status, ty, enc, body) in cases {
            let (got_status, headers, got_body) = get(&dir, path, accept).await;
            let case = format!("{path} (accept-encoding {accept:?})");
            assert_eq!(got_status.as_u16(), status, "{case}");
            if let Some(ty) = ty {
                let got = header(&headers, "content-type").unwrap_or_default();
                assert!(got.starts_with(ty), "{case}: content-type {got}");
            }
            assert_eq!(header(&headers, "content-encoding"), enc, "{case}");
            if status == 404 {
                // A build's missing file is not kept: a later build may not be missing it.
                assert_eq!(header(&headers, "cache-control"), Some(CACHE_CONTROL), "{case}");
            }
            if status == 200 {
                assert_eq!(got_body, body, "{case}");
                let cache =
                    if path.starts_with("/pkg/app-") && path.ends_with(".wasm") { CACHE_BUILD } else { CACHE_CONTROL };
                assert_eq!(header(&headers, "cache-control"), Some(cache), "{case}");
                // The app's page preloads the current build; files do not.
                let link = header(&headers, "link");
                if ty == Some("text/html") {
                    assert!(
                        link.is_some_and(|l| l.contains("/pkg/app-0123456789abcdef/starling_frontend_bg.wasm")),
                        "{case}: {link:?}"
                    );
                } else {
                    assert_eq!(link, None, "{case}");
                }
                let csp = header(&headers, "content-security-policy").unwrap_or_default();
                assert!(csp.starts_with("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'"), "{case}: {csp}");
            }
        }
        // A revalidated build file (304) keeps its caching: a 304's headers replace the stored ones.
        let req = Request::get("/pkg/app-0123456789abcdef/chunk_1.wasm")
            .header(header::IF_MODIFIED_SINCE, "Fri, 01 Jan 2100 00:00:00 GMT")
            .body(Body::empty())
            .unwrap();
        let res = service(dir.clone()).oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(res.headers().get(header::CACHE_CONTROL).unwrap(), CACHE_BUILD);
        // API paths never fall through to the app.
        let (status, headers, body) = get(&dir, "/v1/nothing", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(header(&headers, "content-type").unwrap_or_default().starts_with("application/json"));
        assert!(String::from_utf8_lossy(&body).contains("not_found"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
