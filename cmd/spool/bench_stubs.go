package main

import "context"

func (b *bench) outageScenario(ctx context.Context) error { return nil }
func (b *bench) telemetry(ctx context.Context) error      { return nil }
