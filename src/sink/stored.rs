//! The lake's tables as the models' `insert_new` checks read them.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use futures::future::BoxFuture;

use crate::lake;
use crate::transform::dedup::StoredTables;

/// Delta tables at the version a batch's models check against, by dotted name.
pub struct StoredDeltaTables {
    tables: HashMap<String, DeltaTable>,
}

impl StoredDeltaTables {
    pub(super) fn new(tables: HashMap<String, DeltaTable>) -> Self {
        Self { tables }
    }
}

impl StoredTables for StoredDeltaTables {
    fn table<'a>(
        &'a self,
        ctx: &'a SessionContext,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn TableProvider>>, DataFusionError>> {
        Box::pin(async move {
            let Some(table) = self.tables.get(name) else {
                return Ok(None);
            };
            let provider = lake::table_provider(ctx, table, name).await;
            provider
                .map(Some)
                .map_err(|e| DataFusionError::External(Box::new(e)))
        })
    }
}
