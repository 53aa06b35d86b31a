package activities

import (
	"context"
	"time"
)

// RotationDue exposes the rotation decision.
func RotationDue(issued, hardEnd, end time.Time, rotateAt float64) (time.Time, bool) {
	return rotationDue(issued, hardEnd, end, rotateAt)
}

// SetRotationHook stops rotations at a named step, as a killed worker would.
func SetRotationHook(a *Activities, kill func(step string) bool) { a.rotationHook = kill }

// RotationPlan reads a staged Job's credentials as RunJob does and says
// when they are due for rotation (zero: never).
func RotationPlan(ctx context.Context, a *Activities, in RunInput) (time.Time, error) {
	k := &keeper{a: a, log: actionLog(ctx), dbCap: make(chan dbCapped, 1)}
	if err := k.load(ctx, in); err != nil {
		return time.Time{}, err
	}
	k.plan(ctx)
	return k.due, nil
}

// RotateOnce reads a staged Job's credentials as RunJob does and rotates
// them once, without waiting for their due time or revoking the previous
// ones (their grace is RunJob's).
func RotateOnce(ctx context.Context, a *Activities, in RunInput) error {
	k := &keeper{a: a, log: actionLog(ctx), dbCap: make(chan dbCapped, 1)}
	if err := k.load(ctx, in); err != nil {
		return err
	}
	defer k.current.stop()
	return k.rotate(ctx)
}

var HeartbeatEvery = heartbeatEvery
