package store

import (
	"errors"
	"testing"
)

func TestGroupByDomain(t *testing.T) {
	groups, err := GroupByDomain([]QueueRecipient{
		{Address: "a@One.test"}, {Address: "b@two.test"}, {Address: "c@one.test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 2 || groups[0].Domain != "one.test" || groups[1].Domain != "two.test" ||
		len(groups[0].Recipients) != 2 || groups[0].Recipients[1].Address != "c@one.test" {
		t.Fatalf("groups = %+v", groups)
	}
	if _, err := GroupByDomain([]QueueRecipient{{Address: "nodomain@"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad address: %v", err)
	}
}
