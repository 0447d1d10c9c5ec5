// Written by hand to match migrations/*/up.sql (no diesel CLI in the build).

diesel::table! {
    orders (id) {
        id -> Int8,
        order_id -> Uuid,
        #[max_length = 64]
        user_id -> Varchar,
        number_of_items -> Int4,
        total_amount -> Numeric,
        created_at -> Timestamptz,
    }
}
