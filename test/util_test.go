package test

import "time"

// sleepBriefly is the step of bounded polls on a condition.
func sleepBriefly() { time.Sleep(10 * time.Millisecond) }
