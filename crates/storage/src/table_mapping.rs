//! The mapping of an aggregate that is one table, generated: all a template
//! user writes is which column holds what, and how to rebuild the aggregate
//! from a row.

/// Generates the row type, the [`Mapping`](crate::Mapping) (load, page,
/// insert, versioned update, delete, batch load) and the
/// [`Mapped`](crate::Mapped) impl of an aggregate stored in one table.
///
/// The table (from `schema.rs`, in scope) has an `id` column (`Uuid`, the
/// primary key, constraint `<table>_pkey`) and a `version` column (`Int8`);
/// the macro handles both. `write` names each other column, its Rust type
/// and its value taken from the aggregate; `read` rebuilds the aggregate
/// from the row, the typed id and the version (a row that no longer parses
/// is an `Err`, reported as a storage failure):
///
/// An optional `unique { column, .. }` after `read` names the text
/// columns that hold the aggregate's unique keys
/// ([`Aggregate::unique_keys`](domain::Aggregate::unique_keys), declared
/// under the column's name): the mapping then finds an aggregate by each
/// (`get_by`, one indexed read).
///
/// ```ignore
/// storage::table_mapping! {
///     /// Maps [`Account`] to `accounts`.
///     pub struct AccountMapping: Account => accounts;
///     write |account| {
///         owner_id: Uuid = account.owner().into(),
///         balance_cents: i64 = account.balance_cents(),
///     }
///     read |row, id, version| {
///         Ok(Account::restore(id, version, row.owner_id.into(), row.balance_cents))
///     }
/// }
/// ```
#[macro_export]
macro_rules! table_mapping {
    (
        $(#[$meta:meta])*
        $vis:vis struct $mapping:ident: $aggregate:ty => $table:ident;
        write |$written:ident| { $($column:ident: $column_type:ty = $value:expr),+ $(,)? }
        read |$row:ident, $id:ident, $version:ident| $restore:block
        $(unique { $($unique:ident),+ $(,)? })?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $mapping;

        // A block, so that the row type and the query traits stay private
        // to the generated code. The run methods are called by path: the
        // caller may have imported diesel's synchronous `RunQueryDsl` too.
        const _: () = {
        use $crate::diesel::{ExpressionMethods as _, OptionalExtension as _};
        use $crate::diesel::{QueryDsl as _, SelectableHelper as _};

        #[derive(
            $crate::diesel::Queryable,
            $crate::diesel::Selectable,
            $crate::diesel::Insertable,
            $crate::diesel::AsChangeset,
        )]
        #[diesel(table_name = $table, check_for_backend($crate::diesel::pg::Pg))]
        // Every column written, `None` as NULL: one SQL shape, rendered once.
        #[diesel(treat_none_as_default_value = false)]
        struct Row {
            id: $crate::__private::Uuid,
            version: i64,
            $($column: $column_type,)+
        }

        impl Row {
            fn of($written: &$aggregate) -> Self {
                Self {
                    id: $crate::__private::uuid($crate::__private::Aggregate::id($written)),
                    version: $crate::version_to_db($crate::__private::Aggregate::version($written)),
                    $($column: $value,)+
                }
            }

            fn restore(self) -> $crate::diesel::QueryResult<$aggregate> {
                let $row = self;
                let $id = <$aggregate as $crate::__private::Aggregate>::Id::from($row.id);
                let $version = $crate::version_from_db($row.version);
                // A closure, so that `?` in the user's block returns from it.
                let restore = move || -> ::core::result::Result<$aggregate, $crate::__private::BoxError> {
                    $restore
                };
                let restored = restore();
                restored.map_err(|e| $crate::__private::corrupt::<$aggregate>(&e))
            }
        }
        impl $crate::Mapping for $mapping {
            type Aggregate = $aggregate;
            const PRIMARY_KEY: &'static str = concat!(stringify!($table), "_pkey");

            async fn load(
                conn: &$crate::diesel_async::AsyncPgConnection,
                id: <$aggregate as $crate::__private::Aggregate>::Id,
            ) -> $crate::diesel::QueryResult<Option<$aggregate>> {
                let query = $crate::cached($table::table
                    .find($crate::__private::uuid(id))
                    .select(Row::as_select())
                    .limit(1));
                let row: Option<Row> = $crate::diesel_async::RunQueryDsl::get_result(query, &mut &*conn).await.optional()?;
                row.map(Row::restore).transpose()
            }

            async fn load_by(
                conn: &$crate::diesel_async::AsyncPgConnection,
                key: &$crate::__private::UniqueKey,
            ) -> $crate::diesel::QueryResult<Option<$aggregate>> {
                $($(
                    if key.name == stringify!($unique) {
                        let query = $crate::cached($table::table
                            .filter($table::$unique.eq(&key.value))
                            .select(Row::as_select())
                            .limit(1));
                        let row: Option<Row> = $crate::diesel_async::RunQueryDsl::get_result(query, &mut &*conn).await.optional()?;
                        return row.map(Row::restore).transpose();
                    }
                )+)?
                let _ = (conn, key);
                Ok(None)
            }

            async fn load_page(
                conn: &$crate::diesel_async::AsyncPgConnection,
                after: Option<<$aggregate as $crate::__private::Aggregate>::Id>,
                limit: i64,
            ) -> $crate::diesel::QueryResult<Vec<$aggregate>> {
                let mut query = $table::table
                    .select(Row::as_select())
                    .order($table::id)
                    .limit(limit)
                    .into_boxed();
                if let Some(after) = after {
                    query = query.filter($table::id.gt($crate::__private::uuid(after)));
                }
                let rows: Vec<Row> = $crate::diesel_async::RunQueryDsl::load(query, &mut &*conn).await?;
                rows.into_iter().map(Row::restore).collect()
            }

            fn insert<'a>(writes: &mut $crate::Writes<'a>, aggregate: &'a $aggregate) {
                writes.root($crate::cached(
                    $crate::diesel::insert_into($table::table).values(Row::of(aggregate)),
                ));
            }

            fn update<'a>(writes: &mut $crate::Writes<'a>, old: &'a $aggregate, new: &'a $aggregate) {
                let id = $crate::__private::uuid($crate::__private::Aggregate::id(new));
                let old_version =
                    $crate::version_to_db($crate::__private::Aggregate::version(old));
                writes.root($crate::cached($crate::diesel::update(
                    $table::table
                        .filter($table::id.eq(id))
                        .filter($table::version.eq(old_version)),
                )
                .set(Row::of(new))));
            }

            async fn load_many(
                conn: &$crate::diesel_async::AsyncPgConnection,
                ids: &[<$aggregate as $crate::__private::Aggregate>::Id],
            ) -> $crate::diesel::QueryResult<Vec<$aggregate>> {
                let ids: Vec<_> = ids.iter().copied().map($crate::__private::uuid).collect();
                let query = $table::table
                    .filter($table::id.eq_any(ids))
                    .select(Row::as_select());
                let rows: Vec<Row> = $crate::diesel_async::RunQueryDsl::load(query, &mut &*conn).await?;
                rows.into_iter().map(Row::restore).collect()
            }

            fn delete(
                writes: &mut $crate::Writes<'_>,
                id: <$aggregate as $crate::__private::Aggregate>::Id,
            ) {
                writes.root($crate::cached(
                    $crate::diesel::delete($table::table.find($crate::__private::uuid(id))),
                ));
            }
        }

        impl $crate::Mapped for $aggregate {
            type Mapping = $mapping;
        }
        };
    };
}
