package main

import (
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/ptp"
)

// TestApplyPTPOptions checks the mapping of sfptpd's ptp options onto
// the ptp package's Config, and that unset options keep its defaults.
func TestApplyPTPOptions(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		check func(t *testing.T, c ptp.Config)
	}{
		{"defaults kept", "sync_module ptp p\n[p]\ninterface eth0\n", func(t *testing.T, c ptp.Config) {
			d := ptp.DefaultConfig()
			if c.AnnounceInterval != d.AnnounceInterval || c.SyncInterval != d.SyncInterval || c.DelayReqInterval != d.DelayReqInterval ||
				c.AnnounceReceiptTimeout != d.AnnounceReceiptTimeout || c.Priority1 != d.Priority1 || c.Priority2 != d.Priority2 ||
				c.DelayFilter != d.DelayFilter || c.MaxFreqPPB != d.MaxFreqPPB || c.Timestamping != ptp.TimestampingAuto || c.SyncThreshold != 0 ||
				c.TxLatency != 0 || c.RxLatency != 0 || c.OutlierFilterSize != 60 || c.OutlierFilterAdaption != 1 {
				t.Fatalf("config = %+v", c)
			}
		}},
		{"every mapped option", `sync_module ptp p
limit_freq_adj 1000
[ptp]
interface eth0
ptp_profile default-e2e
[p]
timestamping sw
sync_threshold 2000
ptp_announce_interval -2
ptp_announce_timeout 4
ptp_sync_pkt_interval -4
ptp_delayreq_interval 3
ptp_bmc_priority1 10
ptp_bmc_priority2 20
mpd_filter_size 5
outlier_filter_size 12
outlier_filter_adaption 0
ptp_tx_latency 120
ptp_rx_latency -35
`, func(t *testing.T, c ptp.Config) {
			if c.TxLatency != 120*time.Nanosecond || c.RxLatency != -35*time.Nanosecond {
				t.Fatalf("latencies = %v, %v", c.TxLatency, c.RxLatency)
			}
			if c.Timestamping != ptp.TimestampingSoftware || c.SyncThreshold != 2*time.Microsecond || c.AnnounceInterval != -2 ||
				c.AnnounceReceiptTimeout != 4 || c.SyncInterval != -4 || c.DelayReqInterval != 3 || c.Priority1 != 10 ||
				c.Priority2 != 20 || c.DelayFilter != 5 || c.MaxFreqPPB != 1000 || c.OutlierFilterSize != 12 || c.OutlierFilterAdaption != 0 {
				t.Fatalf("config = %+v", c)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
		}},
		{"profile defaults", "sync_module ptp p\n[ptp]\ninterface eth0\nptp_profile enterprise\n", func(t *testing.T, c ptp.Config) {
			if c.AnnounceInterval != 0 || c.SyncInterval != 0 || c.DelayReqInterval != 0 || c.AnnounceReceiptTimeout != 3 {
				t.Fatalf("config = %+v", c)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.ParseOptions("t.cfg", []byte(tc.text), config.Options{NTPConfFiles: []string{}})
			if err != nil {
				t.Fatal(err)
			}
			c := ptp.DefaultConfig()
			c.Interface = "eth0"
			if err := applyPTPOptions(&c, cfg.Instances[0]); err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}
