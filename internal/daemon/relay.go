package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/msgauth"
	"github.com/ternmail/tern/internal/mtasts"
	"github.com/ternmail/tern/internal/relay"
)

// startRelay starts the outbound relay when [relay] enabled is set.
func (d *Daemon) startRelay(dl *deliver.Deliverer) error {
	cfg := d.cfg
	if !cfg.Relay.Enabled {
		return nil
	}
	res, err := d.resolver()
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	// Peers' MTA-STS policies, fetched over HTTPS with the system's
	// roots, kept for their max_age in the data directory.
	sts := mtasts.NewCache(res, nil)
	if err := sts.Persist(filepath.Join(cfg.DataDir, "mta-sts")); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	r, err := relay.New(relay.Config{
		Hostname:      cfg.Hostname,
		Node:          relayNode(cfg),
		Lifetime:      cfg.Relay.Lifetime.Duration,
		DelayWarning:  cfg.Relay.DelayWarning.Duration,
		BaseDelay:     cfg.Relay.RetryDelay.Duration,
		MaxConcurrent: cfg.Relay.MaxConcurrent,
		PerDomain:     cfg.Relay.PerDomain,
		// Reply timeouts follow the SMTP door's (RFC 5321 §4.5.3.2).
		CommandTimeout: cfg.Limits.SMTPTimeout.Duration,
	}, relay.Deps{Store: d.st, Deliver: dl, Resolver: res, Log: d.log.With("component", "relay"),
		Signer: msgauth.NewSigner(cfg.DataDir), Dial: relayDialer(cfg.Listen.SMTP),
		Policies: sts})
	if err != nil {
		return err
	}
	r.Start()
	d.relay = r
	return nil
}

// stopRelay interrupts running attempts, which record themselves as
// deferred; it gives them a few seconds even when ctx is spent on the
// doors' draining, since the store closes next.
func (d *Daemon) stopRelay(ctx context.Context) error {
	if d.relay == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return d.relay.Shutdown(ctx)
}
