//! Finding the lake's tables: directories holding a `_delta_log`, found by listing one directory
//! level at a time (data files are never listed).

use std::sync::Arc;

use deltalake::{ObjectStore, ObjectStoreError, Path};

use super::{Lake, LakeError};

/// Tables are `<lake>/<name>/` or `<lake>/<schema>/<name>/`.
const MAX_DEPTH: usize = 2;

/// The dotted names of the Delta tables under the lake, sorted. Directories starting with `_`
/// or `.` (tweetlake's own `_tweetlake`, say) are skipped.
pub async fn table_names(lake: &Lake) -> Result<Vec<String>, LakeError> {
    let (store, root) = lake.object_store()?;
    let mut tables = Vec::new();
    let mut level = vec![(root.clone(), Vec::<String>::new())];
    for depth in 0..=MAX_DEPTH {
        let listings =
            futures::future::try_join_all(level.iter().map(|(dir, _)| subdirectories(&store, dir))).await?;
        let mut next = Vec::new();
        for ((_, parts), children) in level.iter().zip(listings) {
            if depth > 0 && children.iter().any(|c| c == "_delta_log") {
                tables.push(parts.join("."));
                continue;
            }
            let visible = children.into_iter().filter(|c| !c.starts_with(['_', '.']));
            next.extend(visible.map(|child| {
                let mut path = parts.clone();
                path.push(child);
                let dir = path
                    .iter()
                    .fold(root.clone(), |dir, part| dir.join(part.as_str()));
                (dir, path)
            }));
        }
        level = next;
    }
    tables.sort();
    Ok(tables)
}

async fn subdirectories(store: &Arc<dyn ObjectStore>, dir: &Path) -> Result<Vec<String>, LakeError> {
    let listing = match store.list_with_delimiter(Some(dir)).await {
        Ok(listing) => listing,
        Err(ObjectStoreError::NotFound { .. }) => return Ok(Vec::new()),
        Err(source) => {
            return Err(LakeError::Listing {
                path: dir.to_string(),
                source,
            })
        }
    };
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect())
}
