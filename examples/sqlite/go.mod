module example.com/sqlite

go 1.23.0

require github.com/mattn/go-sqlite3 v1.14.32
