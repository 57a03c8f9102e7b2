package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// Output formats (-o).
var formats = []string{"table", "json", "yaml"}

func checkFormat(f string) error {
	for _, x := range formats {
		if f == x {
			return nil
		}
	}
	return usagef("-o %q: want one of %s", f, quoteAll(formats))
}

// printItems writes items in format f: a table with r's columns, a JSON
// array, or a YAML list.
func printItems(w io.Writer, f string, r resource, items []item) error {
	if items == nil {
		items = []item{}
	}
	switch f {
	case "json":
		return writeJSON(w, items)
	case "yaml":
		return writeYAML(w, items)
	}
	if len(items) == 0 {
		_, err := fmt.Fprintf(w, "No %s.\n", r.name)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	headers := make([]string, len(r.columns))
	for i, c := range r.columns {
		headers[i] = c.header
	}
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, it := range items {
		fmt.Fprintln(tw, row(r, it))
	}
	return tw.Flush()
}

// printItem writes one item: JSON or YAML as the platform answered it, or a
// one-row table.
func printItem(w io.Writer, f string, r resource, it item) error {
	switch f {
	case "json":
		return writeJSON(w, it)
	case "yaml":
		return writeYAML(w, it)
	}
	return printItems(w, f, r, []item{it})
}

func row(r resource, it item) string {
	cells := make([]string, len(r.columns))
	for i, c := range r.columns {
		cells[i] = cell(field(it, c.field))
	}
	return strings.Join(cells, "\t")
}

// field returns the item's dotted member, or nil; "a|b" is a, else b
// (one column over two answers' shapes).
func field(it item, dotted string) any {
	if first, rest, ok := strings.Cut(dotted, "|"); ok {
		if v := field(it, first); v != nil {
			return v
		}
		return field(it, rest)
	}
	var v any = it
	for _, k := range strings.Split(dotted, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeYAML(w io.Writer, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Errorf("render YAML: %w", err)
	}
	_, err = w.Write(b)
	return err
}
