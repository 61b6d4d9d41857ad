//go:build race

package web_test

// The server under test is built with -race too when the test runs with it.
func init() { raceEnabled = true }
