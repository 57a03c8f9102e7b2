package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// readFlags are the flags of get, list and watch.
type readFlags struct {
	output   string
	scope    scope
	interval time.Duration
}

// newRead builds get, list or watch: each takes a resource name.
func newRead(d deps, p *platformFlags, verb string) *cobra.Command {
	f := &readFlags{}
	cmd := &cobra.Command{
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, r := range resources {
				out = append(out, cobra.CompletionWithDesc(r.name, r.short))
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
	}
	names := strings.Join(resourceNames(), ", ")
	switch verb {
	case "get":
		cmd.Use, cmd.Short = "get RESOURCE [ID]", "show one item of a resource (or all of them, as list)"
		cmd.Args = resourceArgs(1, 2)
	case "list":
		cmd.Use, cmd.Short = "list RESOURCE", "list a resource's items"
		cmd.Args = resourceArgs(1, 1)
	case "watch":
		cmd.Use, cmd.Short = "watch RESOURCE", "list a resource, then print its changes as they happen (until interrupted)"
		cmd.Args = resourceArgs(1, 1)
		cmd.Flags().DurationVar(&f.interval, "interval", 2*time.Second, "how often to read the list")
	}
	cmd.Long = cmd.Short + ".\n\nResources: " + names + `.
Per-app resources (subscriptions, rules) are read for --app, else for every
app the apps list names; per-tenant ones (packages, instances) need --tenant.
Items carry the appInstanceId (and a rule's kind) of the path they were read
from. The platform admin reads everything; nothing is changed.`
	cmd.Flags().StringVarP(&f.output, "output", "o", "table", "output `format`: table, json or yaml")
	cmd.Flags().StringVar(&f.scope.app, "app", "", "the `appInstanceId` whose subscriptions or rules to read")
	cmd.Flags().StringVar(&f.scope.tenant, "tenant", "", "the `tenantId` whose packages or instances to read")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(f.output); err != nil {
			return err
		}
		r, _ := findResource(args[0])
		a, err := p.resolve(d)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		switch {
		case verb == "watch":
			if f.interval <= 0 {
				return usagef("--interval %s: want a positive duration", f.interval)
			}
			return watch(ctx, d.stdout, d.stderr, a, r, f)
		case len(args) == 2:
			it, err := f.scope.get(ctx, a, r, args[1])
			if err != nil {
				return err
			}
			return printItem(d.stdout, f.output, r, it)
		}
		items, err := f.scope.list(ctx, a, r)
		if err != nil {
			return err
		}
		return printItems(d.stdout, f.output, r, items)
	}
	return cmd
}

// resourceArgs checks there are min to max arguments, the first a resource.
func resourceArgs(min, max int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) < min:
			return usagef("no resource: want one of %s", strings.Join(resourceNames(), ", "))
		case len(args) > max:
			return usagef("unexpected argument %q", args[max])
		}
		if _, ok := findResource(args[0]); !ok {
			return usagef("unknown resource %q: want one of %s", args[0], strings.Join(resourceNames(), ", "))
		}
		return nil
	}
}

// Watch event types.
const (
	added    = "ADDED"
	modified = "MODIFIED"
	deleted  = "DELETED"
)

// watch reads r's list and prints what was added, modified or deleted
// since the last read (at first: every item, added), until ctx ends. It
// reads again after each change the platform's change stream announces
// (GET /kmep/admin/v1/events, server-sent events), and every f.interval
// in any case (changes the stream does not carry, a platform without it).
// The first read's error ends it; later ones are reported and the next
// read tried.
func watch(ctx context.Context, stdout, stderr io.Writer, a api, r resource, f *readFlags) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changed := make(chan struct{}, 1)
	go a.follow(ctx, eventsPath, changed)
	p := newEventPrinter(stdout, f.output, r)
	seen := map[string]string{} // key → the item's JSON
	first := true
	for {
		items, err := f.scope.list(ctx, a, r)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && first:
			return err
		case err != nil:
			fmt.Fprintf(stderr, "kmepctl: %v (reading again in %s)\n", err, f.interval)
		default:
			now := map[string]string{}
			for _, it := range items {
				k := key(it, r)
				b, _ := json.Marshal(it)
				now[k] = string(b)
				switch old, ok := seen[k]; {
				case !ok:
					err = p.print(added, it)
				case old != string(b):
					err = p.print(modified, it)
				}
				if err != nil {
					return err
				}
			}
			for k, old := range seen {
				if _, ok := now[k]; !ok {
					var it item
					_ = json.Unmarshal([]byte(old), &it)
					if err := p.print(deleted, it); err != nil {
						return err
					}
				}
			}
			seen, first = now, false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-time.After(f.interval):
		}
	}
}

// follow reads the server-sent events at path and signals changed
// (without blocking: one pending signal is enough) on each "change" event,
// until ctx ends or the stream does.
func (a api) follow(ctx context.Context, path string, changed chan<- struct{}) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Accept", "text/event-stream")
	client := *a.client
	client.Timeout = 0 // the stream lasts
	res, err := client.Do(req)
	if err != nil {
		return
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		return
	}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if sc.Text() == "event: change" {
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}
}

// eventPrinter writes watch events: table rows under one header (EVENT
// first), one JSON object per line, or one YAML document each.
type eventPrinter struct {
	w      io.Writer
	format string
	r      resource
	header bool
}

func newEventPrinter(w io.Writer, format string, r resource) *eventPrinter {
	return &eventPrinter{w: w, format: format, r: r}
}

func (p *eventPrinter) print(typ string, it item) error {
	ev := map[string]any{"type": typ, "object": it}
	switch p.format {
	case "json":
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.w, "%s\n", b)
		return err
	case "yaml":
		if _, err := io.WriteString(p.w, "---\n"); err != nil {
			return err
		}
		return writeYAML(p.w, ev)
	}
	// A tabwriter per line keeps each event on screen at once; fixed-width
	// cells keep the columns roughly aligned.
	tw := tabwriter.NewWriter(p.w, 14, 4, 2, ' ', 0)
	if !p.header {
		headers := []string{"EVENT"}
		for _, c := range p.r.columns {
			headers = append(headers, c.header)
		}
		fmt.Fprintln(tw, strings.Join(headers, "\t"))
		p.header = true
	}
	fmt.Fprintln(tw, typ+"\t"+row(p.r, it))
	return tw.Flush()
}
