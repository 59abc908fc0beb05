//! Test-only plugin: tries to open a TCP connection. rollgate does not give plugins
//! sockets, so the host must refuse to load it.

use rollgate_plugin::MeasurementExt;
use rollgate_plugin::prelude::*;

/// No options.
#[derive(Deserialize, JsonSchema)]
pub struct Config {}

/// The plugin.
pub struct Socket;

impl Verifier for Socket {
    type Config = Config;

    fn measure(_: Config, _: &Context) -> Result<Measurement, String> {
        match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => Ok(Measurement::new(Verdict::Pass, None, "connected")),
            Err(e) => Err(format!("connect failed: {e}")),
        }
    }
}

rollgate_plugin::export_verifier!(Socket);
