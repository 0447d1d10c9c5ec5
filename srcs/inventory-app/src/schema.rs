// Written by hand to match migrations/ (no diesel CLI needed).

diesel::table! {
    movies (id) {
        id -> Int8,
        #[max_length = 255]
        title -> Varchar,
        description -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}
