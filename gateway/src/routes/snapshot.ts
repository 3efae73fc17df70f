// The catalog snapshot routes are built from: the shared catalog watcher's type
// (core's CatalogWatcher: a constant number of blocking queries, whatever the
// number of services).
export type { CatalogInstance, CatalogSnapshot } from '@gantry/core';
