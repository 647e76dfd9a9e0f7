package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/friendgate/friendgate/internal/policytest"
)

func newTestCommand() *cobra.Command {
	var (
		verbose bool
		output  string
	)
	c := &cobra.Command{
		Use:   "test [PATH]...",
		Short: "Evaluate policies against test cases offline, for CI",
		Long: `test runs FriendPolicyTest suites: each names policy manifests (FriendPolicy and
ConfigMap YAML) and request cases with the decision each must get. A PATH is a suite
file or a directory searched recursively for files named *friendgate-test.yaml; the
default is the current directory.

It prints a PASS/FAIL line per case, explains each failure with what every policy made
of the request, and exits 1 when a case fails or a policy is invalid.`,
		Example: `  friendgate test config/samples
  friendgate test policies/anti-spam/friendgate-test.yaml -v`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"."}
			}
			if output != "table" && output != "json" {
				return fmt.Errorf("--output must be table or json, not %q", output)
			}
			files, err := policytest.FindSuites(args...)
			if err != nil {
				return err
			}
			if len(files) == 0 {
				return fmt.Errorf("no *friendgate-test.yaml suite found under %s", strings.Join(args, ", "))
			}
			results := make([]policytest.SuiteResult, 0, len(files))
			for _, f := range files {
				results = append(results, policytest.RunFile(f))
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				err = printJSON(out, results)
			} else {
				err = printTable(out, results, verbose)
			}
			if err != nil {
				return err
			}
			for i := range results {
				if results[i].Failed() > 0 {
					return exitCode(1)
				}
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "explain passing cases too")
	c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return c
}

func printTable(out io.Writer, results []policytest.SuiteResult, verbose bool) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tSUITE\tCASE\tDECISION")
	var details strings.Builder
	passed, failed := 0, 0
	for i := range results {
		r := &results[i]
		suite := r.Name
		if suite == "" {
			suite = r.Path
		}
		if r.Err != nil {
			failed++
			fmt.Fprintf(tw, "ERROR\t%s\t-\t-\n", suite)
			fmt.Fprintf(&details, "\nERROR %s (%s)\n", suite, r.Path)
			for _, line := range strings.Split(r.Err.Error(), "\n") {
				fmt.Fprintf(&details, "  %s\n", line)
			}
			continue
		}
		for _, w := range r.Warnings {
			fmt.Fprintf(tw, "WARN\t%s\t-\t%s\n", suite, w)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(tw, "NOTE\t%s\t-\t%s\n", suite, n)
		}
		for j := range r.Cases {
			c := &r.Cases[j]
			status := "PASS"
			if c.Passed() {
				passed++
			} else {
				status = "FAIL"
				failed++
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", status, suite, c.Name, c.Got)
			if c.Passed() && !verbose {
				continue
			}
			fmt.Fprintf(&details, "\n%s %s / %s\n", status, suite, c.Name)
			for _, p := range c.Problems {
				fmt.Fprintf(&details, "  %s\n", p)
			}
			for _, t := range c.Trace {
				mode := ""
				if t.DryRun {
					mode = " (DryRun)"
				}
				fmt.Fprintf(&details, "    %s%s: %s\n", t.Policy, mode, t.Reason)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "%s\n%d passed, %d failed\n", details.String(), passed, failed)
	return err
}

type jsonCase struct {
	Suite    string   `json:"suite"`
	File     string   `json:"file"`
	Case     string   `json:"case,omitempty"`
	Result   string   `json:"result"`
	Decision string   `json:"decision,omitempty"`
	Problems []string `json:"problems,omitempty"`
}

func printJSON(out io.Writer, results []policytest.SuiteResult) error {
	var cases []jsonCase
	for i := range results {
		r := &results[i]
		if r.Err != nil {
			cases = append(cases, jsonCase{Suite: r.Name, File: r.Path, Result: "error", Problems: []string{r.Err.Error()}})
			continue
		}
		for j := range r.Cases {
			c := &r.Cases[j]
			res := "pass"
			if !c.Passed() {
				res = "fail"
			}
			cases = append(cases, jsonCase{Suite: r.Name, File: r.Path, Case: c.Name, Result: res, Decision: c.Got, Problems: c.Problems})
		}
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(cases)
}
