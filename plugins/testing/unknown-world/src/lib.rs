//! Test-only component: exports `example:greeter/greet`, which is no rollgate world.

wit_bindgen::generate!({ world: "greeter", path: "wit" });

/// The component.
pub struct Greeter;

impl exports::example::greeter::greet::Guest for Greeter {
    fn hello(name: String) -> String {
        format!("hello {name}")
    }
}

export!(Greeter);
