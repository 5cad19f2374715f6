//go:build !linux

package main

import (
	"errors"
	"os"
	"time"
)

var errNoProc = errors.New("not measured: needs Linux /proc")

func peakRSS(int) (int64, error) { return 0, errNoProc }

func cpuTime(int) (cpuUse, error) { return cpuUse{}, errNoProc }

func machineBusy() (time.Duration, error) { return 0, errNoProc }

func maxRSS(*os.ProcessState) int64 { return 0 }

func currentRSS(int) (int64, error) { return 0, errNoProc }
