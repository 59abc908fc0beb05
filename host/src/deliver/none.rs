//! The `none` target: verification only. A rollout with `target: none` watches metrics of a
//! change someone else is making (or rehearses a policy) without touching anything, so every
//! step "applies" at once and is always ready.

use super::{Applied, Readiness, Step, Target, TargetError};
use crate::metrics::BoxFuture;

/// Applies nothing and is always ready; the step is still recorded by the engine, so the
/// audit trail reads the same as with a real target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoneTarget;

/// What [`NoneTarget`] reports as its output.
pub const NOTHING_APPLIED: &str = "no target: nothing applied";

impl Target for NoneTarget {
    fn describe(&self) -> String {
        "none".into()
    }

    fn apply<'a>(
        &'a self,
        _step: &'a Step,
        _epoch: Option<i64>,
    ) -> BoxFuture<'a, Result<Applied, TargetError>> {
        Box::pin(async {
            Ok(Applied {
                output: NOTHING_APPLIED.into(),
            })
        })
    }

    fn ready<'a>(&'a self, _step: &'a Step) -> BoxFuture<'a, Result<Readiness, TargetError>> {
        Box::pin(async { Ok(Readiness::Ready) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::testing::step;

    #[tokio::test]
    async fn applies_nothing_and_is_always_ready() {
        let t = NoneTarget;
        let s = step();
        assert_eq!(t.apply(&s, None).await.unwrap().output, NOTHING_APPLIED);
        assert_eq!(t.ready(&s).await.unwrap(), Readiness::Ready);
        assert_eq!(t.describe(), "none");
    }
}
