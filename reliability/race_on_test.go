//go:build race

package reliability

// raceEnabled: the figures of a -race build are inflated (memory ×5–10, CPU
// ×2–20); the report says which build measured them.
const raceEnabled = true
