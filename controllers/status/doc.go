// Package status is the friendgate controller's FriendPolicy status reconciler
// (docs/operator.md).
//
// For each FriendPolicy it compiles the spec and the labelled ConfigMap lists with the
// engine the webhook replicas use, counts the live replicas whose Lease watermark shows
// they enforce the policy's current generation, and writes Ready, counts and
// observedGeneration to the status, only when something in it changed.
//
// Three sources trigger a reconcile: a FriendPolicy's generation changing, a labelled
// ConfigMap its blocklists select changing, and the Tracker announcing a change among the
// live webhook replicas (one joined, left or expired, or a watermark moved).
package status
