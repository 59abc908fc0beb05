//! The web view in a real headless Chromium (Debian's `chromium` and `chromium-driver`):
//! a small W3C WebDriver client ([`driver`]), a static site on a port of its own for the
//! harness's own test and the cross-site pages ([`site`]), and the tests.
//!
//! | module | what it covers |
//! |---|---|
//! | `harness` | the client itself on a static page: find, type, click, wait, scripts, screenshots, alert and `img` detection |
//! | `list` | the list page: a row per rollout, the tiles against the API, filters in the URL |
//! | `detail` | the detail page: phases, one chart point per measurement by verdict, live updates |
//! | `act` | actions: an operator's pause and audit, a refusal's reason, read-only viewers |
//! | `cross_site` | forms on another origin can neither act nor sign in with the operator's cookie |
//! | `hostile` | markup in plugin messages, versions and reasons renders inert |
//! | `screens` | `rollgate ui --store` over the quickstart, read-only; the screenshots |
//!
//! Without chromedriver on the PATH the tests say so loudly and pass, unless
//! `ROLLGATE_REQUIRE_BROWSER` is set (CI sets it: there they never skip).

pub mod driver;
pub mod site;
pub mod web;

mod act;
mod cross_site;
mod detail;
mod harness;
mod hostile;
mod list;
mod screens;
