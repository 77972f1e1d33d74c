//go:build !linux

package memtrim

import (
	"errors"
	"runtime/debug"
)

// Release returns free heap memory to the OS. Unmapping the executable's
// start-up pages is implemented for Linux only; elsewhere the result says
// so with errors.ErrUnsupported after the heap part is done.
func Release() (Result, error) {
	debug.FreeOSMemory()
	return Result{}, errors.ErrUnsupported
}
