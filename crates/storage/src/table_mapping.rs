//! The mapping of an aggregate that is one table, generated: all a template
//! user writes is a row struct and its two conversions.

/// Generates the [`Mapping`](crate::Mapping) (load, page, insert, versioned
/// update, delete, batch load) and the [`Mapped`](crate::Mapped) impl of an
/// aggregate stored in one table.
///
/// It needs, in scope:
/// * the diesel table (from `schema.rs`), whose columns include `id`
///   (`Uuid`, the primary key, constraint `<table>_pkey`) and `version`
///   (`Int8`);
/// * a row struct deriving `Queryable, Selectable, Insertable, AsChangeset`
///   for that table (`AsChangeset` leaves `id` out by itself);
/// * `From<&Aggregate> for Row` and `TryFrom<Row> for Aggregate` (or
///   `From`): a stored value that no longer parses is a storage error.
///
/// ```ignore
/// #[derive(Queryable, Selectable, Insertable, AsChangeset)]
/// #[diesel(table_name = counters, check_for_backend(diesel::pg::Pg))]
/// struct CounterRow { id: Uuid, version: i64, label: String, value: i64 }
///
/// impl From<&Counter> for CounterRow { .. }
/// impl From<CounterRow> for Counter { .. }
///
/// storage::table_mapping!(pub struct CounterMapping: Counter => counters as CounterRow);
/// ```
#[macro_export]
macro_rules! table_mapping {
    ($(#[$meta:meta])* $vis:vis struct $mapping:ident: $aggregate:ty => $table:ident as $row:ty) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $mapping;

        // A block, so that the query traits are in scope for every method.
        // The run methods are called by path: the caller may have imported
        // diesel's synchronous `RunQueryDsl` too (its prelude does).
        const _: () = {
        use $crate::diesel::{ExpressionMethods as _, OptionalExtension as _};
        use $crate::diesel::{QueryDsl as _, SelectableHelper as _};

        impl $crate::Mapping for $mapping {
            type Aggregate = $aggregate;
            const PRIMARY_KEY: &'static str = concat!(stringify!($table), "_pkey");

            async fn load(
                conn: &mut $crate::diesel_async::AsyncPgConnection,
                id: <$aggregate as $crate::__private::Aggregate>::Id,
            ) -> $crate::diesel::QueryResult<Option<$aggregate>> {
                let query = $table::table
                    .find($crate::__private::uuid(id))
                    .select(<$row>::as_select());
                let row: Option<$row> = $crate::diesel_async::RunQueryDsl::first(query, conn).await.optional()?;
                row.map($crate::__private::restore).transpose()
            }

            async fn load_page(
                conn: &mut $crate::diesel_async::AsyncPgConnection,
                after: Option<<$aggregate as $crate::__private::Aggregate>::Id>,
                limit: i64,
            ) -> $crate::diesel::QueryResult<Vec<$aggregate>> {
                let mut query = $table::table
                    .select(<$row>::as_select())
                    .order($table::id)
                    .limit(limit)
                    .into_boxed();
                if let Some(after) = after {
                    query = query.filter($table::id.gt($crate::__private::uuid(after)));
                }
                let rows: Vec<$row> = $crate::diesel_async::RunQueryDsl::load(query, conn).await?;
                rows.into_iter().map($crate::__private::restore).collect()
            }

            async fn insert(
                conn: &mut $crate::diesel_async::AsyncPgConnection,
                aggregate: &$aggregate,
            ) -> $crate::diesel::QueryResult<()> {
                let insert = $crate::diesel::insert_into($table::table).values(<$row>::from(aggregate));
                $crate::diesel_async::RunQueryDsl::execute(insert, conn).await.map(drop)
            }

            async fn update(
                conn: &mut $crate::diesel_async::AsyncPgConnection,
                old: &$aggregate,
                new: &$aggregate,
            ) -> $crate::diesel::QueryResult<usize> {
                let id = $crate::__private::uuid($crate::__private::Aggregate::id(new));
                let old_version =
                    $crate::version_to_db($crate::__private::Aggregate::version(old));
                let update = $crate::diesel::update(
                    $table::table
                        .filter($table::id.eq(id))
                        .filter($table::version.eq(old_version)),
                )
                .set(<$row>::from(new));
                $crate::diesel_async::RunQueryDsl::execute(update, conn).await
            }

            async fn load_many(
                conn: &mut $crate::diesel_async::AsyncPgConnection,
                ids: &[<$aggregate as $crate::__private::Aggregate>::Id],
            ) -> $crate::diesel::QueryResult<Vec<$aggregate>> {
                let ids: Vec<_> = ids.iter().copied().map($crate::__private::uuid).collect();
                let query = $table::table
                    .filter($table::id.eq_any(ids))
                    .select(<$row>::as_select());
                let rows: Vec<$row> = $crate::diesel_async::RunQueryDsl::load(query, conn).await?;
                rows.into_iter().map($crate::__private::restore).collect()
            }

            async fn delete(
                conn: &mut $crate::diesel_async::AsyncPgConnection,
                id: <$aggregate as $crate::__private::Aggregate>::Id,
            ) -> $crate::diesel::QueryResult<usize> {
                let delete = $crate::diesel::delete($table::table.find($crate::__private::uuid(id)));
                $crate::diesel_async::RunQueryDsl::execute(delete, conn).await
            }
        }

        impl $crate::Mapped for $aggregate {
            type Mapping = $mapping;
        }
        };
    };
}
