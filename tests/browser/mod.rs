//! The web view in a real headless Chromium (Debian's `chromium` and `chromium-driver`):
//! a small W3C WebDriver client ([`driver`]), a static site on a port of its own for the
//! harness's own test and the cross-site pages ([`site`]), and the tests.
//!
//! | module | what it covers |
//! |---|---|
//! | `harness` | the client itself on a static page: find, type, click, wait, scripts, screenshots, alert and `img` detection |
//! | `list` | the list page: a row per rollout, the tiles against the API, filters in the URL |
//! | `cross_site` | a form on another origin cannot act with the operator's cookie |
//!
//! Without chromedriver on the PATH the tests say so loudly and pass, unless
//! `ROLLGATE_REQUIRE_BROWSER` is set (CI sets it: there they never skip).

pub mod driver;
pub mod site;
pub mod web;

mod cross_site;
mod harness;
mod list;
