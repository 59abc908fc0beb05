pub async fn document(
    store: &crate::store::Store,
    name: &str,
    run: Option<i64>,
) -> Result<serde_json::Value, (u16, String)> {
    Err((
        404,
        format!(
            "no detail yet for {name:?} {run:?} {}",
            store.path().display()
        ),
    ))
}
