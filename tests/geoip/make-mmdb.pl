#!/usr/bin/perl
#
# Write a small MaxMind DB "Country" database for the tests:
#
#	make-mmdb.pl [-4] [-t TYPE] OUT.mmdb NETWORK/PREFIX=VALUE ...
#	make-mmdb.pl OUT.mmdb 127.0.0.0/24=DE 10.0.0.0/8=KP ::1/128=FR
#
# VALUE is one of
#	CC		{ country => { iso_code => CC } }
#	registered:CC	{ registered_country => { iso_code => CC } } only
#	none		{ } (in the database, but no country)
# CC is written as given (any 1-16 printable characters), so tests can
# also store malformed codes.  Later arguments override earlier ones where
# networks overlap.  -t sets the metadata database_type (default
# "WSGate-Test-Country").  -4 writes an IPv4-only tree (ip_version 4), in
# which no IPv6 address, IPv4-mapped or not, can be looked up.
#
# The tree is IPv6 with IPv4 aliased into it (as in the GeoLite2 files), so
# IPv4 networks, IPv6 networks and IPv4-mapped addresses all resolve.
# Reserved networks (loopback, RFC 1918, documentation) are kept, because the
# tests only have loopback to work with.  The output is byte-for-byte
# reproducible: the build epoch is SOURCE_DATE_EPOCH, or 1 (not 0: this
# writer encodes a zero build_epoch in a way libmaxminddb rejects as
# "invalid metadata").
#
# Needs Debian's libmaxmind-db-writer-perl.
#
use strict;
use warnings;

use MaxMind::DB::Writer::Tree;

sub usage {
	print STDERR "usage: $0 [-4] [-t TYPE] OUT.mmdb " .
	    "NETWORK/PREFIX=VALUE ...\n";
	exit 2;
}

my $type = 'WSGate-Test-Country';
my $v4 = 0;
if (@ARGV >= 1 && $ARGV[0] eq '-4') {
	$v4 = 1;
	shift(@ARGV);
}
if (@ARGV >= 2 && $ARGV[0] eq '-t') {
	(undef, $type) = splice(@ARGV, 0, 2);
}
usage() if @ARGV < 2;
my ($out, @specs) = @ARGV;

# Never leave a half-written file behind, whatever fails.
my $tmp;
END { unlink($tmp) if defined($tmp) && -e $tmp; }

my %types = (
	country			=> 'map',
	registered_country	=> 'map',
	iso_code		=> 'utf8_string',
	geoname_id		=> 'uint32',
);

my $tree = MaxMind::DB::Writer::Tree->new(
	ip_version		=> $v4 ? 4 : 6,
	record_size		=> 24,
	database_type		=> $type,
	languages		=> ['en'],
	description		=> { en => 'wsgate test country database' },
	alias_ipv6_to_ipv4	=> $v4 ? 0 : 1,
	remove_reserved_networks => 0,
	map_key_type_callback	=> sub { $types{ $_[0] } },
);
my $epoch = $ENV{SOURCE_DATE_EPOCH} // 1;
$epoch = 1 unless $epoch =~ /^[0-9]+$/ && $epoch > 0;
$tree->_set_build_epoch($epoch);

for my $spec (@specs) {
	my ($net, $val) = $spec =~ m{^([0-9A-Fa-f:.]+/[0-9]+)=(.+)$}
	    or die "$0: bad argument '$spec' (want NETWORK/PREFIX=VALUE)\n";
	my $rec;
	if ($val eq 'none') {
		$rec = {};
	} elsif ($val =~ /^registered:([!-~]{1,16})$/) {
		$rec = { registered_country => { iso_code => $1 } };
	} elsif ($val =~ /^([!-~]{1,16})$/) {
		$rec = { country => { iso_code => $1 } };
	} else {
		die "$0: bad value '$val' in '$spec'\n";
	}
	$tree->insert_network($net, $rec);
}

$tmp = "$out.tmp.$$";
open(my $fh, '>:raw', $tmp) or die "$0: $tmp: $!\n";
$tree->write_tree($fh);
close($fh) or die "$0: $tmp: $!\n";
rename($tmp, $out) or die "$0: $out: $!\n";
exit 0;
