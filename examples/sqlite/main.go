// Command sqlite is polyarch's cgo example: it links SQLite through github.com/mattn/go-sqlite3
// (C code, so it needs CGO_ENABLED=1 and a C compiler per platform), creates a table in the
// database named by its first argument (in memory when there is none), inserts a row and reads
// it back.
package main

import (
	"database/sql"
	"fmt"
	"os"
	"runtime"

	_ "github.com/mattn/go-sqlite3"
)

func run(dsn string) (string, error) {
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)`); err != nil {
		return "", fmt.Errorf("create table: %w", err)
	}
	body := fmt.Sprintf("hello from %s/%s", runtime.GOOS, runtime.GOARCH)
	res, err := db.Exec(`INSERT INTO notes (body) VALUES (?)`, body)
	if err != nil {
		return "", fmt.Errorf("insert: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return "", err
	}
	var got, version string
	if err := db.QueryRow(`SELECT body, sqlite_version() FROM notes WHERE id = ?`, id).Scan(&got, &version); err != nil {
		return "", fmt.Errorf("select: %w", err)
	}
	return fmt.Sprintf("row %d: %s (sqlite %s)", id, got, version), nil
}

func main() {
	dsn := ":memory:"
	if len(os.Args) > 1 {
		dsn = os.Args[1]
	}
	out, err := run(dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sqlite:", err)
		os.Exit(1)
	}
	fmt.Println(out)
}
