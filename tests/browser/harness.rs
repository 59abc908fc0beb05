//! The browser harness itself, on a static site of its own: finding, typing, clicking,
//! waiting, scripts, screenshots decoded as PNG, and the detection of the effects a hostile
//! text could have (an alert, an `img` element) that the web view's tests rely on.

use super::driver::{Browser, decode_base64, png_size};
use super::site::Site;
use std::time::Duration;

const HTML: &str = "text/html; charset=utf-8";

fn pages() -> Vec<super::site::Page> {
    vec![
        (
            "/",
            HTML,
            "<!doctype html><title>harness</title><h1 data-title>Harness</h1>\
             <input name=q><button id=go>go</button><p id=out></p>\
             <ul id=late></ul><script src=/app.js></script>"
                .into(),
        ),
        (
            "/app.js",
            "text/javascript",
            "document.getElementById('go').addEventListener('click', () => {\n\
               const q = document.querySelector('input[name=q]').value;\n\
               document.getElementById('out').textContent = 'got ' + q;\n\
             });\n\
             setTimeout(() => {\n\
               for (const v of ['a', 'b', 'c']) {\n\
                 const li = document.createElement('li');\n\
                 li.setAttribute('data-v', v);\n\
                 li.textContent = v;\n\
                 document.getElementById('late').append(li);\n\
               }\n\
             }, 300);\n"
                .into(),
        ),
        (
            "/inert",
            HTML,
            "<!doctype html><p id=t></p><script src=/inert.js></script>".into(),
        ),
        (
            "/inert.js",
            "text/javascript",
            "document.getElementById('t').textContent = '<img src=x onerror=alert(1)>';".into(),
        ),
        (
            "/hostile",
            HTML,
            "<!doctype html><p id=t></p><script src=/hostile.js></script>".into(),
        ),
        (
            // What the web view must never do: parse a text as HTML.
            "/hostile.js",
            "text/javascript",
            "document.getElementById('t').innerHTML = '<img src=x onerror=alert(1)>';".into(),
        ),
    ]
}

#[test]
fn the_browser_harness_drives_a_real_chromium_and_sees_alerts_images_and_screenshots() {
    let Some(b) = Browser::start("the_browser_harness_drives_a_real_chromium") else {
        return;
    };
    let site = Site::start(pages());

    b.goto(&format!("{}/", site.url));
    assert_eq!(b.text(&b.find("h1[data-title]")), "Harness");
    // Elements added later are waited for, with a deadline.
    let items = b.wait("three late items", Duration::from_secs(10), |b| {
        let found = b.find_all("#late li[data-v]");
        (found.len() == 3).then_some(found)
    });
    let values: Vec<_> = items
        .iter()
        .map(|el| b.attr(el, "data-v").expect("data-v"))
        .collect();
    assert_eq!(values, ["a", "b", "c"]);
    assert_eq!(b.count("#late li"), 3);
    assert_eq!(b.attr(&items[0], "data-none"), None);
    b.send_keys(&b.find("input[name=q]"), "x < y & \"z\"");
    b.click(&b.find("#go"));
    assert_eq!(b.text(&b.find("#out")), "got x < y & \"z\"");
    assert_eq!(
        b.script("return arguments[0] + document.title;", vec!["t:".into()]),
        "t:harness"
    );
    assert_eq!(
        b.script_async(
            "const done = arguments[arguments.length - 1]; \
             fetch('/app.js').then(r => done(r.status));",
            vec![],
        ),
        200
    );
    // A quiet page: no alert, no image, nothing in the console.
    let calm = b.hostile_effects();
    assert_eq!(
        (
            calm.open_alert,
            calm.imgs_added,
            calm.imgs_now,
            calm.alerts.len()
        ),
        (None, 0, 0, 0)
    );
    assert_eq!(b.console_errors(), Vec::<String>::new());

    // Screenshot: decoded and written as a PNG of the window's width.
    let shots = tempfile::tempdir().expect("tempdir");
    let path = shots.path().join("harness.png");
    let (width, height) = b.screenshot(&path);
    let png = std::fs::read(&path).expect("written");
    assert_eq!(png_size(&png), Some((width, height)));
    assert_eq!(width, 1400, "the window is 1400 px wide");
    assert!((500..=1000).contains(&height), "height {height}");

    // The hostile text as text: shown as characters, nothing runs.
    b.goto(&format!("{}/inert", site.url));
    let text = b.wait("the text", Duration::from_secs(10), |b| {
        Some(b.text(&b.find("#t"))).filter(|t| !t.is_empty())
    });
    assert_eq!(text, "<img src=x onerror=alert(1)>");
    let inert = b.hostile_effects();
    assert_eq!(
        (inert.open_alert, inert.imgs_added, inert.alerts.len()),
        (None, 0, 0)
    );

    // The same text as HTML: the watch sees the image and the alert it opens.
    b.goto(&format!("{}/hostile", site.url));
    let alert = b.wait("the alert", Duration::from_secs(10), |b| b.alert());
    assert_eq!(alert, "1");
    let hostile = b.hostile_effects();
    assert_eq!(hostile.open_alert.as_deref(), Some("1"));
    assert_eq!((hostile.imgs_added, hostile.imgs_now), (1, 1));
    assert_eq!(hostile.alerts, ["1"]);
    assert_eq!(b.alert(), None, "hostile_effects dismissed the alert");
    // The page's failed image load is an error the console shows.
    assert!(
        b.console_errors().iter().any(|e| e.contains("/x")),
        "the broken image's 404 is logged"
    );
    let paths: Vec<_> = site.hits().into_iter().map(|h| h.path).collect();
    assert!(paths.contains(&"/x".to_string()), "{paths:?}");
}

#[test]
fn base64_and_png_headers_decode() {
    assert_eq!(decode_base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
    assert_eq!(decode_base64("aGVsbG8").as_deref(), Some(&b"hello"[..]));
    assert_eq!(decode_base64("aGV sbG8=").as_deref(), Some(&b"hello"[..]));
    assert_eq!(decode_base64("a$=="), None);
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&1400u32.to_be_bytes());
    png.extend_from_slice(&1000u32.to_be_bytes());
    assert_eq!(png_size(&png), Some((1400, 1000)));
    assert_eq!(png_size(b"GIF89a"), None);
}
