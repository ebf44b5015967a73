//! The example service. Not built yet: see the README.

fn main() {
    println!(
        "app: the example HTTP service is not implemented yet; it will serve users, \
         orders and the action log over HTTP on 127.0.0.1:8080 (in memory without \
         DATABASE_URL, on Postgres with it)."
    );
}
