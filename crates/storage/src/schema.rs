// @generated automatically by Diesel CLI.

diesel::table! {
    accounts (id) {
        id -> Uuid,
        version -> Int8,
        owner_id -> Uuid,
        balance_cents -> Int8,
    }
}

diesel::table! {
    actions (id) {
        id -> Uuid,
        version -> Int8,
        what -> Text,
        aggregate_kind -> Text,
        aggregate_id -> Uuid,
        at -> Timestamptz,
    }
}

diesel::table! {
    order_lines (order_id, position) {
        order_id -> Uuid,
        position -> Int4,
        sku -> Text,
        quantity -> Int4,
        unit_price_cents -> Int8,
    }
}

diesel::table! {
    orders (id) {
        id -> Uuid,
        version -> Int8,
        user_id -> Uuid,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    products (id) {
        id -> Uuid,
        version -> Int8,
        sku -> Text,
        name -> Text,
        price_cents -> Int8,
    }
}

diesel::table! {
    user_profiles (user_id) {
        user_id -> Uuid,
        first_name -> Text,
        last_name -> Text,
    }
}

diesel::table! {
    user_stats (id) {
        id -> Uuid,
        version -> Int8,
        orders_placed -> Int8,
        total_spent_cents -> Int8,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        version -> Int8,
        username -> Text,
        score -> Float8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(order_lines -> orders (order_id));
diesel::joinable!(user_profiles -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    actions,
    order_lines,
    orders,
    products,
    user_profiles,
    user_stats,
    users,
);
