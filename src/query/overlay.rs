//! A session's catalog: its own schemas, views and temporary tables laid over the lake's
//! shared tables, which it reads but can neither replace nor drop. The hidden time-travel
//! schema resolves but is listed nowhere (information_schema, pg_catalog, SHOW TABLES).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use deltalake::datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider, TableProvider,
};
use deltalake::datafusion::common::{plan_err, TableReference};
use deltalake::datafusion::error::{DataFusionError, Result};
use deltalake::datafusion::prelude::SessionContext;

use super::{time_travel, CATALOG, DEFAULT_SCHEMA};

/// A schema of the shared lake: registering a table replaces the one of the same name in one
/// step, so a session planning while the lake refreshes never finds the table missing.
#[derive(Debug, Default)]
pub struct LakeSchema {
    tables: RwLock<HashMap<String, Arc<dyn TableProvider>>>,
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.read().get(name).cloned())
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.write().insert(name, table))
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.write().remove(name))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }
}

impl LakeSchema {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<dyn TableProvider>>> {
        self.tables
            .read()
            .expect("the lake schema lock is never poisoned")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<dyn TableProvider>>> {
        self.tables
            .write()
            .expect("the lake schema lock is never poisoned")
    }
}

/// Gives the lake's context a replaceable default schema (the others are made on first use).
pub fn make_lake_schemas_replaceable(ctx: &SessionContext) -> Result<()> {
    lake_catalog(ctx).register_schema(DEFAULT_SCHEMA, Arc::new(LakeSchema::default()))?;
    Ok(())
}

/// The lake schema `name`, made on first use.
pub fn lake_schema(ctx: &SessionContext, name: &str) -> Result<Arc<dyn SchemaProvider>> {
    let catalog = lake_catalog(ctx);
    if let Some(schema) = catalog.schema(name) {
        return Ok(schema);
    }
    let schema: Arc<dyn SchemaProvider> = Arc::new(LakeSchema::default());
    catalog.register_schema(name, schema.clone())?;
    Ok(schema)
}

fn lake_catalog(ctx: &SessionContext) -> Arc<dyn CatalogProvider> {
    ctx.catalog(CATALOG).expect("the default catalog exists")
}

/// One session's catalog: its own schemas over the lake's.
#[derive(Debug)]
pub struct ConnectionCatalog {
    lake: Arc<dyn CatalogProvider>,
    own: MemoryCatalogProvider,
}

impl ConnectionCatalog {
    pub fn new(lake: Arc<dyn CatalogProvider>) -> Self {
        Self {
            lake,
            own: MemoryCatalogProvider::new(),
        }
    }

    /// Whether `reference` names one of this session's own tables or views.
    pub fn holds_own(&self, reference: &TableReference) -> bool {
        let schema = reference.schema().unwrap_or(DEFAULT_SCHEMA);
        self.own
            .schema(schema)
            .is_some_and(|s| s.table_exist(reference.table()))
    }

    pub fn is_lake_schema(&self, name: &str) -> bool {
        self.lake.schema(name).is_some()
    }

    /// This session's part of schema `name`, made on first use.
    fn own_schema(&self, name: &str) -> Arc<dyn SchemaProvider> {
        if let Some(schema) = self.own.schema(name) {
            return schema;
        }
        let schema: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
        // A MemoryCatalogProvider accepts every schema.
        let _ = self.own.register_schema(name, schema.clone());
        schema
    }
}

impl CatalogProvider for ConnectionCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lake
            .schema_names()
            .into_iter()
            .filter(|name| name != time_travel::SCHEMA)
            .chain(self.own.schema_names())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match self.lake.schema(name) {
            Some(lake) => Some(Arc::new(OverlaySchema {
                lake,
                own: self.own_schema(name),
            })),
            None => self.own.schema(name),
        }
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        if self.is_lake_schema(name) {
            return plan_err!("schema {name} holds lake tables: the lake is read-only here");
        }
        self.own.register_schema(name, schema)
    }

    fn deregister_schema(&self, name: &str, cascade: bool) -> Result<Option<Arc<dyn SchemaProvider>>> {
        if self.is_lake_schema(name) {
            return plan_err!("schema {name} holds lake tables: the lake is read-only here");
        }
        self.own.deregister_schema(name, cascade)
    }
}

/// A lake schema as one session sees it: the lake's tables plus the session's own.
#[derive(Debug)]
struct OverlaySchema {
    lake: Arc<dyn SchemaProvider>,
    own: Arc<dyn SchemaProvider>,
}

impl OverlaySchema {
    fn refuse(&self, name: &str) -> Result<()> {
        match self.lake.table_exist(name) {
            true => Err(DataFusionError::Plan(format!(
                "{name} is a lake table: the lake is read-only here"
            ))),
            false => Ok(()),
        }
    }
}

#[async_trait]
impl SchemaProvider for OverlaySchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.lake.table_names();
        names.extend(self.own.table_names());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match self.own.table(name).await? {
            Some(table) => Ok(Some(table)),
            None => self.lake.table(name).await,
        }
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        self.refuse(&name)?;
        self.own.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.refuse(name)?;
        self.own.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.own.table_exist(name) || self.lake.table_exist(name)
    }
}
