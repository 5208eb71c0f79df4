package config

import (
	"strings"
	"testing"
)

func TestStoreDriver(t *testing.T) {
	if d := Default().Store.Driver; d != DriverSQLite {
		t.Errorf("default driver %q", d)
	}
	p := write(t, "[store]\ndriver = \"postgres\"\ndsn = \"postgres://tern@db.example:5432/tern\"\n")
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Driver != DriverPostgres || c.Store.DSN != "postgres://tern@db.example:5432/tern" {
		t.Errorf("store = %+v", c.Store)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	for _, tc := range []struct {
		store Store
		want  string
	}{
		{Store{Driver: DriverPostgres}, "store.dsn: must be set"},
		{Store{Driver: DriverSQLite, DSN: "postgres://x"}, "store.dsn: only used"},
		{Store{Driver: "mysql"}, `store.driver: "mysql"`},
		{Store{}, `store.driver: ""`},
	} {
		c := Default()
		c.Store = tc.store
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: Validate = %v, want %q", tc.store, err, tc.want)
		}
	}
}
